"""Studies that train one model per (row, seed) with a bundle job and collect each run's scores file."""

from __future__ import annotations

import json
import logging
import os

logger = logging.getLogger(__name__)


def run_per_seed(config_files: list, rows: dict, seeds: list, output_dir: str, scores: str, what: str) -> dict:
    """Run ``monai.bundle`` on ``config_files`` once per row and seed, with the row's overrides (``rows``: {name:
    {key: value}}) plus ``seed`` and ``run_dir`` = output_dir/row/seed<s>; a run whose scores file (``scores``,
    relative to its run_dir) exists is not redone. Returns {row: {seed: the scores file's content}}."""
    from monai.bundle import run

    results: dict = {}
    for name, overrides in rows.items():
        for seed in seeds:
            run_dir = os.path.join(output_dir, name, f"seed{seed}")
            scores_file = os.path.join(run_dir, scores)
            if not os.path.isfile(scores_file):
                logger.info(f"{what}: training on {name} (seed {seed})")
                run(config_file=config_files, seed=int(seed), run_dir=run_dir, **overrides)
            with open(scores_file) as f:
                results.setdefault(name, {})[str(seed)] = json.load(f)
    return results
