"""The downstream classification study of reward fine-tuning (the paper's utility test): a 3D classifier of tumour
grade (the graded demo's HGG / LGG, or any datalist class) trained on real volumes, or on gem3d's synthetic volumes
made from the same training masks with the stage-2 or the reward fine-tuned window model, scored on the real test
set; ``train_classifier.json`` runs once per (row, seed). Writes grade_study.json, grade_study.md and a bar plot.
"""

from __future__ import annotations

import json
import os

import numpy as np

from .data.datalist import read_datalist
from .io import new_figure, save_figure, save_json, save_text
from .networks.weights import load_weights
from .sampling.enhance import run_datalist
from .seed_runs import run_per_seed


def synthetic_set(synth, datalist: str, name: str, network, output_dir: str, class_key: str, seed: int = 0) -> str:
    """gem3d volumes for every training mask of ``datalist`` with the window weights ``name`` (``network``: their
    loaded network, None for the synthesizer's own), each entry carrying its source case's class; reused when
    present. Returns the new datalist."""
    path = os.path.join(output_dir, "datalist.json")
    if not os.path.isfile(path):
        with synth.variant({"window_weights": name}, network):
            run_datalist(synth, datalist, "training", output_dir, repeats=1, seed=seed, overwrite=True)
        classes = {it["id"]: it[class_key] for it in read_datalist(datalist, ("training",))["training"]}
        with open(path) as f:
            content = json.load(f)
        for entry in content["training"]:
            entry[class_key] = classes[entry["source"]]
        save_json(content, path, overwrite=True)
    return path


def run_grade_study(
    synth,
    networks: dict,
    datalist: str,
    output_dir: str,
    config_files: list,
    seeds: list,
    class_key: str = "class",
    overrides: dict | None = None,
    seed: int = 0,
) -> dict:
    """``networks``: {weights name: {"network", "file"} or None for the synthesizer's own}; one synthetic row per
    name beside the real row. Finished runs (their scores file exists) are not redone."""
    rows = {"real": [[datalist, "training"]]}
    for name, alt in networks.items():
        net = None if alt is None else load_weights(alt["network"], alt["file"], f"{name} window model", "cpu")
        folder = os.path.join(output_dir, f"synthetic_{name}")
        rows[f"gem3d_{name}"] = [[synthetic_set(synth, datalist, name, net, folder, class_key, seed), "training"]]
    per_row = {
        row: {"cls_sources": src, "cls_test_sources": [[datalist, "test"]], "class_key": class_key, **(overrides or {})}
        for row, src in rows.items()
    }
    runs = run_per_seed(
        config_files, per_row, seeds, output_dir, os.path.join("classifier", "test_scores.json"), "grades"
    )
    summary = {
        row: {
            f"{m}_{stat}": float(fn([r[m] for r in per_seed.values()]))
            for m in ("accuracy", "auc")
            for stat, fn in (("mean", np.mean), ("std", np.std))
        }
        for row, per_seed in runs.items()
    }
    save_json({"rows": rows, "seeds": seeds, "runs": runs, "summary": summary}, f"{output_dir}/grade_study.json", True)
    _report(summary, seeds, runs, output_dir)
    return summary


def _report(summary: dict, seeds: list, runs: dict, output_dir: str) -> None:
    cases = next(iter(next(iter(runs.values())).values()))["cases"]
    lines = [
        f"3D grade classifier (train_classifier.json) per training source, on {cases} real test cases; "
        f"mean ± std over seeds {seeds}.",
        "",
        "| training source | accuracy % | ROC AUC |",
        "|---|---|---|",
    ]
    for row, s in summary.items():
        lines.append(
            f"| {row} | {100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f} | "
            f"{s['auc_mean']:.3f} ± {s['auc_std']:.3f} |"
        )
    save_text("\n".join(lines) + "\n", os.path.join(output_dir, "grade_study.md"), overwrite=True)
    fig, axes = new_figure(1, 2, figsize=(9, 3.4))
    names = list(summary)
    for ax, m, title in zip(axes, ("accuracy", "auc"), ("accuracy on the real test set", "ROC AUC")):
        ax.bar(names, [summary[n][f"{m}_mean"] for n in names], yerr=[summary[n][f"{m}_std"] for n in names])
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    save_figure(fig, os.path.join(output_dir, "grade_study.png"), overwrite=True)
