"""The pretraining study: does a diffusion-pretrained backbone (with anatomical guidance) segment better from few
labels than a restorative one or none?

For every pretraining variant (``pretrain_segmenter.json`` with its pretext and corpus) the backbone is pretrained
once (timed); then every (variant or scratch) x protocol (frozen backbone + non-linear probe, full fine-tuning) x
label fraction is a row of the downstream study (``downstream.run_study``: ``train_segmenter.json`` +
``finetune_segmenter.json`` per row and seed, scored on the real test set). Writes pretraining.json beside the
study's downstream.json / downstream.md / downstream.png.
"""

from __future__ import annotations

import logging
import os
import time

from .downstream import run_study
from .io import save_json

logger = logging.getLogger(__name__)


def pretrain_backbones(config_files: list, variants: dict, output_dir: str, overrides: dict) -> dict:
    """Pretrain each variant ``{name: {"pretext": ..., more overrides}}`` unless its weights exist; returns
    {name: {"file", "seconds"}} (seconds None for weights made earlier)."""
    from monai.bundle import run

    made = {}
    for name, variant in variants.items():
        spec = {k: v for k, v in variant.items() if k != "fractions"}
        weights = os.path.join(output_dir, f"{name}.pt")
        seconds = None
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
    previous = os.path.join(output_dir, "pretraining.json")
    if os.path.isfile(previous):  # keep the timing of backbones pretrained by an earlier run of the study
        import json

        with open(previous) as f:
            old = json.load(f)["backbones"]
        for name, b in backbones.items():
            if b["seconds"] is None and name in old:
                b["seconds"] = old[name]["seconds"]
    save_json({"variants": variants, "backbones": backbones}, previous, overwrite=True)
    rows = study_rows(backbones, protocols, fractions, variants)
    return run_study(segment_configs, rows, seeds, datalist, "", output_dir, segment_overrides)
