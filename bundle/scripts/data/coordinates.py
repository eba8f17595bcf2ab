"""Anatomical coordinates: for every voxel, where it lies in the MNI template, normalised to [0, 1] over the
template's head box (the guidance target of diffusion pretraining, ``pretrain_segmenter.json``).

The demo generator writes the exact maps (``prepare_demo.json --demo_coordinates true``); for volumes without them
(real scans, gem3d's synthetic volumes) the coordinate regressor (``train_coordinates.json``) predicts them.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import Gem3dInputError
from ..io import load_nifti
from .model_space import ModelGrid, to_model_space


@functools.lru_cache(maxsize=1)
def template_box() -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) MNI corner in mm of the cropped template the demo is made from."""
    from .demo_phantom import load_template

    tpl = load_template()
    shape = np.asarray(tpl.tissue.shape[1:], np.float64) - 1.0
    corners = np.stack([np.zeros(3), shape]) @ tpl.affine[:3, :3].T + tpl.affine[:3, 3]
    return corners.min(0), corners.max(0)


def normalise_mm(mm: np.ndarray) -> np.ndarray:
    """MNI mm (..., 3) -> [0, 1] over the template box, per axis."""
    lo, hi = template_box()
    return ((mm - lo) / (hi - lo)).astype(np.float32)


def box_size_mm() -> np.ndarray:
    lo, hi = template_box()
    return hi - lo


def load_coordinates(path: str, grid: ModelGrid) -> np.ndarray:
    """A coordinate map file (X, Y, Z, 3) mm -> (3, S, S, Z) normalised coordinates in model space (each axis
    resampled like an image)."""
    data, affine = load_nifti(path, "coordinate map", rank=4)
    if data.shape[-1] != 3:
        raise Gem3dInputError(f"coordinate map {path} has {data.shape[-1]} channels; expected 3 (x, y, z in mm)")
    norm = normalise_mm(np.asarray(data, np.float32))
    return np.stack([to_model_space(norm[..., k], affine, grid, "image")[0] for k in range(3)])
