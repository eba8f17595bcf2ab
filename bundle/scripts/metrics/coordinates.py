"""Error of predicted anatomical coordinates, in millimetres of the template."""

from __future__ import annotations

import numpy as np
import torch

from ..data.coordinates import box_size_mm
from ..data.pretrain_dataset import predict_coordinates


def coordinate_error_mm(regressor: torch.nn.Module, cases: list[dict], device) -> dict:
    """Euclidean distance (mm) between predicted and true template coordinates inside the anatomy of each case with
    a coordinate map: median and mean per case, then mean over cases, and the 95th percentile over all voxels."""
    regressor.eval()
    scale = box_size_mm()[:, None]
    per_case, pooled = [], []
    for case in cases:
        if case["coordinates"] is None:
            continue
        pred = predict_coordinates(regressor, case["image"], device)
        inside = case["anatomy"]
        err = np.linalg.norm((pred[:, inside] - case["coordinates"][:, inside]) * scale, axis=0)
        per_case.append({"id": case["id"], "median_mm": float(np.median(err)), "mean_mm": float(err.mean())})
        pooled.append(err)
    if not per_case:
        raise ValueError("no case with a coordinate map to score")
    allerr = np.concatenate(pooled)
    return {
        "median_mm": float(np.mean([c["median_mm"] for c in per_case])),
        "mean_mm": float(np.mean([c["mean_mm"] for c in per_case])),
        "p95_mm": float(np.percentile(allerr, 95)),
        "cases": per_case,
    }
