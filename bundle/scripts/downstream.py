"""The downstream segmentation study (paper Table 4 protocol): does gem3d's synthetic data train a segmenter?

Each row is a training source: the real training set, the gem3d-enhanced set at 1x / 2x / 3x (no real voxels),
real + 3x, or another enhanced set (``"enhanced": datalist``, e.g. the mask-only baseline's reconstructions). For
every row and seed, ``train_segmenter.json`` runs as its own ``monai.bundle`` job (same network, same number of
training samples), and its final weights are scored on the real test set (Dice and HD95 per BraTS
region of the label set). Writes downstream.json, downstream.md and a bar plot of mean and spread over seeds.
"""

from __future__ import annotations

import os

import numpy as np

from .data.datalist import read_datalist
from .errors import Gem3dInputError
from .io import new_figure, save_figure, save_json, save_text
from .seed_runs import run_per_seed


def subset_datalist(enhanced: str, repeats: int, output: str, row: str) -> str:
    """The first ``repeats`` resamplings of an enhanced datalist (entries carry their ``repeat``) as a datalist for
    the downstream row ``row``."""
    if not os.path.isfile(enhanced):
        raise Gem3dInputError(
            f"downstream row {row!r}: enhanced datalist not found: {enhanced} "
            "(make it with enhance.json, see docs/BENCHMARKS.md)"
        )
    items = read_datalist(enhanced, ("training",))["training"]  # absolute paths, every file checked
    entries = [e for e in items if int(e.get("repeat", 0)) < repeats]
    have = {int(e.get("repeat", 0)) for e in items}
    if not set(range(repeats)) <= have:
        raise Gem3dInputError(f"{enhanced} holds repeats {sorted(have)}; {repeats}x needs 0..{repeats - 1}")
    save_json({"name": f"gem3d-{repeats}x", "training": entries}, output, overwrite=True)
    return output


def labelled_subset(datalist: str, fraction: float, output: str) -> str:
    """The first ceil(``fraction`` x N) training cases of ``datalist`` (the same cases for every row and seed, so rows
    differ only in what they compare) as a datalist at ``output``."""
    items = read_datalist(datalist, ("training",))["training"]
    if not 0 < fraction <= 1:
        raise Gem3dInputError(f"label fraction must be in (0, 1], got {fraction}")
    keep = items[: max(1, int(np.ceil(fraction * len(items) - 1e-9)))]
    save_json({"name": f"{100 * fraction:g}% of the labels", "training": keep}, output, overwrite=True)
    return output


def row_sources(rows: dict, real_datalist: str, enhanced: str, work_dir: str) -> dict:
    """Resolve row specs ``{"real": true, "fraction": f, "synthetic": k, "enhanced": datalist}`` to
    [[datalist, section], ...] training sources (``fraction``: that share of the real training cases;
    ``enhanced`` defaults to the study's gem3d-enhanced datalist)."""
    out = {}
    for name, spec in rows.items():
        real = real_datalist
        if spec.get("real") and spec.get("fraction", 1.0) < 1.0:
            real = labelled_subset(
                real_datalist, float(spec["fraction"]), os.path.join(work_dir, f"labels_{name}.json")
            )
        sources = [[real, "training"]] if spec.get("real") else []
        k = int(spec.get("synthetic", 0))
        if k:
            subset = os.path.join(work_dir, f"datalist_{name}.json")
            sources.append([subset_datalist(spec.get("enhanced", enhanced), k, subset, name), "training"])
        if not sources:
            raise Gem3dInputError(f"downstream row {name!r} trains on nothing (set real and/or synthetic)")
        out[name] = sources
    return out


def run_study(
    config_files: list,
    rows: dict,
    seeds: list,
    real_datalist: str,
    enhanced: str,
    output_dir: str,
    overrides: dict | None = None,
) -> dict:
    """Train and score one segmenter per (row, seed); finished runs (their scores file exists) are not redone. A
    row's ``overrides`` (e.g. a pretrained backbone) go to its runs on top of ``overrides``."""
    os.makedirs(output_dir, exist_ok=True)
    sources = row_sources(rows, real_datalist, enhanced, output_dir)
    per_row = {
        name: {
            "seg_sources": src,
            "seg_weights_dir": "$@run_dir",
            **(overrides or {}),
            **rows[name].get("overrides", {}),
        }
        for name, src in sources.items()
    }
    runs = run_per_seed(
        config_files, per_row, seeds, output_dir, os.path.join("segmenter", "test_scores.json"), "downstream"
    )
    results = {name: {seed: scores["mean"] for seed, scores in per_seed.items()} for name, per_seed in runs.items()}
    summary = summarise(results)
    record = {"rows": rows, "seeds": seeds, "runs": results, "summary": summary}
    save_json(record, os.path.join(output_dir, "downstream.json"), overwrite=True)
    _plot(summary, output_dir)
    _report(summary, rows, seeds, output_dir)
    return summary


def summarise(results: dict) -> dict:
    """Mean and standard deviation over seeds of Dice (%) and HD95 (mm) per row and region."""
    out = {}
    for name, per_seed in results.items():
        out[name] = {}
        for region in next(iter(per_seed.values())):  # the regions the segmenter was scored on
            dice = [100 * s[region]["dice"] for s in per_seed.values()]
            hd = [s[region]["hd95"] for s in per_seed.values() if np.isfinite(s[region]["hd95"])]
            out[name][region] = {
                "dice_mean": float(np.mean(dice)),
                "dice_std": float(np.std(dice)),
                "hd95_mean": float(np.mean(hd)) if hd else float("nan"),
                "hd95_std": float(np.std(hd)) if hd else float("nan"),
                "seeds": len(dice),
            }
    return out


def _regions(summary: dict) -> list:
    return list(next(iter(summary.values()))) if summary else []


def _plot(summary: dict, output_dir: str) -> None:
    names, regions = list(summary), _regions(summary)
    fig, axes = new_figure(1, 2, figsize=(11, 3.8))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        x = np.arange(len(regions)) + i * width
        for ax, key in zip(axes, ("dice", "hd95")):
            mean = [summary[name][r][f"{key}_mean"] for r in regions]
            std = [summary[name][r][f"{key}_std"] for r in regions]
            ax.bar(x, mean, width, yerr=std, capsize=2, label=name)
    for ax, title in zip(axes, ("Dice (%) on the real test set", "HD95 (mm), lower is better")):
        ax.set_xticks(np.arange(len(regions)) + 0.4 - width / 2)
        ax.set_xticklabels(regions)
        ax.set_title(title)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, os.path.join(output_dir, "downstream.png"), overwrite=True)


def _report(summary: dict, rows: dict, seeds: list, output_dir: str) -> None:
    regions = _regions(summary)
    lines = [
        f"Segmenter (SegResNet, train_segmenter.json) per training source; mean ± std over seeds {seeds}.",
        "",
        "| training source | " + " | ".join(f"{r} Dice % | {r} HD95 mm" for r in regions) + " |",
        "|---|" + "---|---|" * len(regions),
    ]
    for name, per_region in summary.items():
        cells = []
        for r in regions:
            s = per_region[r]
            cells.append(f"{s['dice_mean']:.1f} ± {s['dice_std']:.1f}")
            cells.append(f"{s['hd95_mean']:.1f} ± {s['hd95_std']:.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    save_text("\n".join(lines) + "\n", os.path.join(output_dir, "downstream.md"), overwrite=True)
