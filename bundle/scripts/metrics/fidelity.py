"""Fidelity against the real volume (paper Table 2 protocol), diversity between samples, privacy vs training set."""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import MultiScaleSSIMMetric, PSNRMetric, SSIMMetric

# 64 px slices are too small for MS-SSIM's default 11-px kernel over 5 scales: 3-px kernel, 3 scales.
_MS_WEIGHTS = (0.2, 0.3, 0.5)


def _axial(volume: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.moveaxis(np.asarray(volume, np.float32), 2, 0))[:, None]


def slice_fidelity(fake: np.ndarray, real: np.ndarray, mask: np.ndarray | None = None) -> dict[str, float]:
    """Mean MS-SSIM, SSIM and PSNR over axial slice pairs (slices with anatomy in ``mask`` if given)."""
    f, r = _axial(fake).clamp(0, 1), _axial(real).clamp(0, 1)
    if mask is not None:
        keep = torch.as_tensor(np.moveaxis(np.asarray(mask) > 0, 2, 0)).flatten(1).float().mean(1) > 0.05
        f, r = f[keep], r[keep]
    ms = MultiScaleSSIMMetric(spatial_dims=2, data_range=1.0, kernel_size=3, weights=_MS_WEIGHTS)(f, r)
    ss = SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)(f, r)
    ps = PSNRMetric(max_val=1.0)(f, r)
    return {"ms_ssim": float(ms.mean()), "ssim": float(ss.mean()), "psnr": float(ps[torch.isfinite(ps)].mean())}


def pairwise_ms_ssim(volumes: list[np.ndarray]) -> float:
    """Mean MS-SSIM between different samples of the same mask (lower = more diverse)."""
    vals = [
        slice_fidelity(volumes[i], volumes[j])["ms_ssim"]
        for i in range(len(volumes))
        for j in range(i + 1, len(volumes))
    ]
    return float(np.mean(vals)) if vals else float("nan")


def _common_z(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central slices two model-space volumes share (same in-plane grid; slice counts may differ)."""
    n = min(a.shape[2], b.shape[2])
    return tuple(v[:, :, (v.shape[2] - n) // 2 : (v.shape[2] - n) // 2 + n] for v in (a, b))


def nearest_training_similarity(fake: np.ndarray, training: list[np.ndarray]) -> dict:
    """Highest Pearson correlation of ``fake`` with any training volume (1.0 = a copy), over the central slices
    both share. Every training volume is compared: an empty result is an error, never a silent -1."""
    best, idx = -1.0, -1
    for i, t in enumerate(training):
        if t.shape[:2] != fake.shape[:2]:
            raise ValueError(f"privacy check: in-plane grids differ ({fake.shape} vs {t.shape}); use model space")
        f, r = _common_z(np.asarray(fake, np.float32), np.asarray(t, np.float32))
        c = float(np.corrcoef(f.ravel(), r.ravel())[0, 1])
        if c > best:
            best, idx = c, i
    if idx < 0:
        raise ValueError("privacy check: no training volume to compare with")
    return {"nearest_training_corr": best, "nearest_training_index": idx}
