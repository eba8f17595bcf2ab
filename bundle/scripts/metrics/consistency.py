"""Through-plane consistency: does a volume change from slice to slice as much as real anatomy does, and no more?

A slice-wise generator that flickers shows horizontal streaks in coronal and sagittal planes. Two measures on a
volume in RAS model space (z = the axial stacking axis), both compared with the real test set:

- gradient anisotropy: mean |I(z+1) - I(z)| over mean in-plane |I(x+1) - I(x)|, |I(y+1) - I(y)| inside the anatomy;
- adjacent-slice SSIM: mean SSIM between consecutive axial slices that hold anatomy.

MONAI has SSIM but neither measure as such; both are written here on top of it.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.metrics import SSIMMetric


def _foreground(volume: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return (np.asarray(mask) > 0) if mask is not None else (np.asarray(volume) > 0.02)


def gradient_anisotropy(volume: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean through-plane |dI/dz| over mean in-plane |dI/dx|, |dI/dy| where both voxels of a pair are anatomy."""
    v = np.asarray(volume, np.float32)
    fg = _foreground(v, mask)
    grads = []
    for axis in range(3):
        d = np.abs(np.diff(v, axis=axis))
        keep = np.logical_and(np.take(fg, range(v.shape[axis] - 1), axis), np.take(fg, range(1, v.shape[axis]), axis))
        grads.append(float(d[keep].mean()) if keep.any() else float("nan"))
    return grads[2] / max((grads[0] + grads[1]) / 2.0, 1e-8)


def adjacent_slice_ssim(volume: np.ndarray, mask: np.ndarray | None = None, min_foreground: float = 0.05) -> float:
    """Mean SSIM between axial slices z and z + 1 (both with at least ``min_foreground`` anatomy)."""
    v = np.asarray(volume, np.float32)
    fg = _foreground(v, mask).mean((0, 1)) >= min_foreground
    pairs = np.nonzero(fg[:-1] & fg[1:])[0]
    if len(pairs) == 0:
        return float("nan")
    a = torch.as_tensor(np.moveaxis(v[:, :, pairs], 2, 0))[:, None].clamp(0, 1)
    b = torch.as_tensor(np.moveaxis(v[:, :, pairs + 1], 2, 0))[:, None].clamp(0, 1)
    return float(SSIMMetric(spatial_dims=2, data_range=1.0, win_size=7)(a, b).mean())


def consistency(volumes: list[np.ndarray], masks: list[np.ndarray | None] | None = None) -> dict[str, float]:
    """Mean of both measures over a set of volumes."""
    masks = masks if masks is not None else [None] * len(volumes)
    return {
        "grad_anisotropy": float(np.nanmean([gradient_anisotropy(v, m) for v, m in zip(volumes, masks)])),
        "adjacent_ssim": float(np.nanmean([adjacent_slice_ssim(v, m) for v, m in zip(volumes, masks)])),
    }


def relative_to(real: dict[str, float], fake: dict[str, float]) -> dict[str, float]:
    """The figures the targets are stated in: anisotropy as a multiple of real, SSIM as a difference from real."""
    return {
        "grad_anisotropy_x_real": fake["grad_anisotropy"] / real["grad_anisotropy"],
        "adjacent_ssim_minus_real": fake["adjacent_ssim"] - real["adjacent_ssim"],
    }
