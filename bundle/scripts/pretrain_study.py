"""The pretraining study: does a diffusion-pretrained backbone (with anatomical guidance) segment better from few
labels than a restorative one or none?

For every pretraining variant (``pretrain_segmenter.json`` with its pretext and corpus) the backbone is pretrained
once (timed); then every (variant or scratch) x protocol (frozen backbone + non-linear probe, full fine-tuning) x
label fraction is a row of the downstream study (``downstream.run_study``: ``train_segmenter.json`` +
``finetune_segmenter.json`` per row and seed, scored on the real test set). Writes pretraining.json beside the
study's downstream.json / downstream.md / downstream.png.
"""

from __future__ import annotations

import json
import logging
import os
import time

import numpy as np

from .downstream import run_study
from .io import new_figure, save_figure, save_json

logger = logging.getLogger(__name__)


def pretrain_backbones(config_files: list, variants: dict, output_dir: str, overrides: dict) -> dict:
    """Pretrain each variant ``{name: {"pretext": ..., more overrides}}`` unless its weights exist; returns
    {name: {"file", "seconds"}}: the pretraining time, for weights made earlier the one ``pretraining.json`` recorded
    then (None if none did)."""
    from monai.bundle import run

    record = os.path.join(output_dir, "pretraining.json")
    earlier = json.load(open(record))["backbones"] if os.path.isfile(record) else {}
    made = {}
    for name, variant in variants.items():
        spec = {k: v for k, v in variant.items() if k != "fractions"}
        weights = os.path.join(output_dir, f"{name}.pt")
        seconds = earlier.get(name, {}).get("seconds")
        if not os.path.isfile(weights):
            logger.info(f"pretraining {name}: {spec}")
            start = time.time()
            run(
                config_file=config_files,
                pretrain_dir=output_dir,
                pretrain_name=name,
                **{**overrides, **spec},
            )
            seconds = round(time.time() - start, 1)
        made[name] = {"file": weights, "seconds": seconds}
    return made


def study_rows(backbones: dict, protocols: list, fractions: list, variants: dict | None = None) -> dict:
    """Rows ``{init}_{protocol}_{percent}`` for scratch and every pretrained backbone; a variant with ``"fractions"``
    is studied at those label fractions only."""
    rows = {}
    inits = {"scratch": None, **{name: b["file"] for name, b in backbones.items()}}
    for fraction in fractions:
        for protocol in protocols:
            for init, weights in inits.items():
                if fraction not in (variants or {}).get(init, {}).get("fractions", fractions):
                    continue
                rows[f"{init}_{protocol}_{100 * fraction:g}pct"] = {
                    "real": True,
                    "fraction": float(fraction),
                    "overrides": {"backbone_file": weights, "freeze_backbone": protocol == "frozen"},
                }
    return rows


def run_pretrain_study(
    pretrain_configs: list,
    segment_configs: list,
    variants: dict,
    protocols: list,
    fractions: list,
    seeds: list,
    datalist: str,
    output_dir: str,
    pretrain_overrides: dict,
    segment_overrides: dict,
) -> dict:
    backbones = pretrain_backbones(pretrain_configs, variants, output_dir, pretrain_overrides)
    save_json(
        {"variants": variants, "backbones": backbones}, os.path.join(output_dir, "pretraining.json"), overwrite=True
    )
    rows = study_rows(backbones, protocols, fractions, variants)
    summary = run_study(segment_configs, rows, seeds, datalist, "", output_dir, segment_overrides)
    plot_study(summary, ["scratch", *backbones], protocols, fractions, os.path.join(output_dir, "pretraining.png"))
    return summary


def plot_study(summary: dict, inits: list, protocols: list, fractions: list, path: str, regions=None) -> None:
    """One panel per region (default: the anatomy label and the whole tumour when scored): Dice mean ± std per
    backbone, one bar per protocol x label fraction."""
    first = next(iter(summary.values()))
    regions = regions or [r for r in ("label_brain", "whole_tumour") if r in first] or list(first)[:2]
    combos = [(p, f) for f in fractions for p in protocols]
    fig, axes = new_figure(1, len(regions), figsize=(5.5 * len(regions), 3.8))
    axes = np.atleast_1d(axes)
    width = 0.8 / len(combos)
    for ax, region in zip(axes, regions):
        for k, (protocol, fraction) in enumerate(combos):
            keys = [f"{i}_{protocol}_{100 * fraction:g}pct" for i in inits]
            mean = [summary[key][region]["dice_mean"] if key in summary else np.nan for key in keys]
            std = [summary[key][region]["dice_std"] if key in summary else 0.0 for key in keys]
            x = np.arange(len(inits)) + (k - (len(combos) - 1) / 2) * width
            ax.bar(x, mean, width, yerr=std, capsize=2, label=f"{protocol}, {100 * fraction:g}% labels")
        ax.set_xticks(np.arange(len(inits)), [i.replace("_", "\n") for i in inits], fontsize=7)
        ax.set_title(f"{region} Dice (%) on the real test set")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, overwrite=True)
