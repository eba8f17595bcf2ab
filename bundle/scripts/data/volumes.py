"""Bring a volume into model space (RAS, normalised intensity, in-plane size S x S) and back to its own geometry.

The in-plane resize keeps the aspect ratio (longest side to S, then symmetric padding), the slice axis is left
untouched, and everything needed to undo it is recorded in :class:`Geometry`, so results are written on the
input's own voxel grid with its affine.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from monai.transforms import Resize, ScaleIntensityRange, SpatialPad
from nibabel.affines import voxel_sizes
from nibabel.orientations import io_orientation

from ..errors import Gem3dInputError
from ..io import from_ras, to_ras


@dataclass
class Geometry:
    affine: list  # the input's voxel -> world affine (4x4)
    shape: list  # the input's voxel shape
    ras_shape: list  # shape after reordering to RAS
    resized: list  # in-plane size after the aspect-keeping resize
    pad: list  # [[before, after], [before, after]] in-plane padding up to S x S

    def to_dict(self) -> dict:
        return asdict(self)


def normalise_intensity(image: np.ndarray, modality: str = "mri", ct_window=(-160.0, 240.0), percentiles=(0.5, 99.5)):
    """MRI: scale the foreground's percentile range to [0, 1]; CT: clip a HU window to [0, 1]."""
    image = np.asarray(image, dtype=np.float32)
    if modality == "ct":
        lo, hi = ct_window
    elif modality == "mri":
        fg = image[image > 0] if (image > 0).any() else image.ravel()
        lo, hi = 0.0, float(np.percentile(fg, percentiles[1]))
        hi = hi if hi > lo else lo + 1.0
    else:
        raise Gem3dInputError(f"modality must be 'mri' or 'ct', got {modality!r}")
    return np.asarray(ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(image[None])[0])


def _plan(shape_xy, size: int):
    h, w = shape_xy
    scale = size / max(h, w)
    new = [max(1, int(round(h * scale))), max(1, int(round(w * scale)))]
    pads = [[(size - n) // 2, size - n - (size - n) // 2] for n in new]
    return new, pads


def to_model_space(data: np.ndarray, affine: np.ndarray, size: int, kind: str = "image"):
    """RAS reorder, then resize in-plane to fit S x S keeping the aspect ratio, then pad. Returns (array, Geometry)."""
    if data.ndim != 3:
        raise Gem3dInputError(f"expected a 3D volume, got shape {data.shape}")
    ras, _ = to_ras(np.asarray(data), affine)
    new, pads = _plan(ras.shape[:2], size)
    t = torch.as_tensor(np.ascontiguousarray(ras), dtype=torch.float32)[None]
    if list(ras.shape[:2]) != new:
        t = Resize(spatial_size=(*new, ras.shape[2]), mode="nearest" if kind == "label" else "trilinear")(t)
    t = SpatialPad(spatial_size=(size, size, ras.shape[2]), method="symmetric")(t)
    out = np.asarray(t[0])
    out = out.round().astype(np.int16) if kind == "label" else out.astype(np.float32)
    geom = Geometry(np.asarray(affine).tolist(), list(data.shape), list(ras.shape), new, pads)
    return out, geom


def from_model_space(arr: np.ndarray, geom: Geometry, kind: str = "image") -> np.ndarray:
    """Undo :func:`to_model_space`: crop the padding, resize back (linear for images), reorder from RAS."""
    (px0, _), (py0, _) = geom.pad
    h, w = geom.resized
    crop = np.asarray(arr)[px0 : px0 + h, py0 : py0 + w, :]
    ras_shape = geom.ras_shape
    if list(crop.shape[:2]) != list(ras_shape[:2]):
        t = torch.as_tensor(np.ascontiguousarray(crop), dtype=torch.float32)[None]
        t = Resize(spatial_size=tuple(ras_shape), mode="nearest" if kind == "label" else "trilinear")(t)
        crop = np.asarray(t[0])
    return from_ras(crop, np.asarray(geom.affine))


def model_spacing(geom: Geometry) -> tuple[float, float, float]:
    """Voxel size (mm) of the model-space grid: RAS spacing, in-plane scaled by the aspect-keeping resize."""
    affine = np.asarray(geom.affine)
    ras_axis = io_orientation(affine)[:, 0].astype(int)  # the RAS axis each voxel axis becomes in to_ras
    sp = np.empty(3)
    sp[ras_axis] = voxel_sizes(affine)
    return (
        float(sp[0] * geom.ras_shape[0] / geom.resized[0]),
        float(sp[1] * geom.ras_shape[1] / geom.resized[1]),
        float(sp[2]),
    )
