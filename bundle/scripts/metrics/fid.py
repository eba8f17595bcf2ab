"""FID-A / FID-C / FID-S: Frechet distance between real and synthetic slice features per plane (MONAI FIDMetric)."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import FIDMetric

PLANES = {"axial": 2, "coronal": 1, "sagittal": 0}


def plane_slices(volume: np.ndarray, plane: str, min_foreground: float = 0.05, stride: int = 1) -> np.ndarray:
    """(N, a, b) slices along ``plane`` that contain anatomy (foreground fraction >= ``min_foreground``)."""
    axis = PLANES[plane]
    vol = np.moveaxis(np.asarray(volume, np.float32), axis, 0)[::stride]
    keep = (vol > 0.02).mean((1, 2)) >= min_foreground
    return vol[keep]


def _square(slices: np.ndarray, size: int) -> np.ndarray:
    """Pad / crop slices to size x size (centred) so that one encoder sees every plane."""
    n, a, b = slices.shape
    out = np.zeros((n, size, size), np.float32)
    ca, cb = min(a, size), min(b, size)
    oa, ob = (size - ca) // 2, (size - cb) // 2
    ia, ib = (a - ca) // 2, (b - cb) // 2
    out[:, oa : oa + ca, ob : ob + cb] = slices[:, ia : ia + ca, ib : ib + cb]
    return out


def features_per_plane(volumes: list[np.ndarray], extractor, size: int, stride: int = 1) -> dict[str, torch.Tensor]:
    feats = {}
    for plane in PLANES:
        slices = [plane_slices(v, plane, stride=stride) for v in volumes]
        feats[plane] = extractor(_square(np.concatenate(slices), size))
    return feats


def fid_per_plane(real: dict[str, torch.Tensor], fake: dict[str, torch.Tensor]) -> dict[str, float]:
    metric = FIDMetric()
    return {f"fid_{p[0]}": float(metric(fake[p].double(), real[p].double())) for p in PLANES}
