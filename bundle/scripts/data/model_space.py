"""Model space: the voxel grid the networks were trained on, and the one way every volume gets there and back.

A volume is reordered to RAS (MONAI ``Orientation``), resampled to the training spacing along all three axes (MONAI
``Resize`` to the size that spacing implies, like nnU-Net's target spacing) and padded in-plane to S x S (MONAI
``SpatialPad``). When the field of view at that spacing is wider than S, it is first cropped in-plane to the
foreground (the mask's labels, or the image's non-background voxels, with a margin; MONAI's bounding-box helper), as
nnU-Net crops to non-zero; if it is still wider, all three spacings grow by one factor so that it fits: anatomy
keeps its proportions, and the factor is recorded. Everything needed to undo the mapping is
kept in :class:`Geometry`, so results are written on the input's own grid with its affine.

The aspect-keeping fit and its inverse crop are the only parts written here: MONAI's transforms resample to a
spacing or to a size, not to "a spacing, unless the field of view then exceeds S".
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Orientation, Resize, ScaleIntensityRange, SpatialPad
from monai.transforms.utils import generate_spatial_bounding_box

from ..errors import Gem3dInputError
from ..io import save_json

logger = logging.getLogger(__name__)

_AXIS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))  # nibabel's axis codes: affines here are world RAS+ (NIfTI)


@dataclass(frozen=True)
class ModelGrid:
    """The training grid: in-plane size S, voxel size (mm, RAS x y z) and the range of slice counts seen."""

    size: int
    spacing: tuple
    slices: tuple = (1, 100000)

    def __post_init__(self):
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 3 or min(sp) <= 0:
            raise Gem3dInputError(f"model spacing must be three positive sizes in mm, got {self.spacing}")
        object.__setattr__(self, "spacing", sp)
        object.__setattr__(self, "size", int(self.size))
        object.__setattr__(self, "slices", tuple(int(s) for s in self.slices))

    def as_dict(self) -> dict:
        return {"size": self.size, "spacing": list(self.spacing), "slices": list(self.slices)}


def read_model_grid(path: str) -> ModelGrid:
    """The grid recorded beside the shipped weights (written when the training data was encoded)."""
    if not os.path.isfile(path):
        raise Gem3dInputError(f"model grid file not found: {path} (written beside the weights by the window training)")
    with open(path) as f:
        grid = json.load(f)
    try:
        return ModelGrid(grid["size"], grid["spacing"], grid.get("slices", (1, 100000)))
    except (KeyError, TypeError) as exc:
        raise Gem3dInputError(f"model grid file {path} lacks size/spacing: {exc}") from exc


def target_spacing(grid_file: str, datalist: str, section: str = "training") -> list[float]:
    """The spacing recorded beside the weights; without that file (training from scratch), the median RAS voxel
    size of the datalist's training images, as nnU-Net chooses its target spacing."""
    if os.path.isfile(grid_file):
        return list(read_model_grid(grid_file).spacing)
    from .datalist import read_datalist  # datalist reading depends on this module

    items = read_datalist(datalist, (section,))[section]
    sizes = []
    for item in items:
        affine = nib.load(item["image"]).affine
        ras_axis = nib.orientations.io_orientation(affine)[:, 0].astype(int)  # voxel axis i becomes RAS axis
        size = np.empty(3)
        size[ras_axis] = nib.affines.voxel_sizes(affine)
        sizes.append(size)
    spacing = [float(s) for s in np.median(np.asarray(sizes), axis=0)]
    logger.info(f"no model grid at {grid_file}; target spacing {spacing} mm (median of {datalist} {section})")
    return spacing


def model_grid(size: int, spacing, grid_file: str) -> ModelGrid:
    """The grid for ``size`` and ``spacing``, with the slice counts recorded in ``grid_file`` when it exists."""
    slices = read_model_grid(grid_file).slices if os.path.isfile(grid_file) else (1, 100000)
    return ModelGrid(size, spacing, slices)


def write_model_grid(grid: ModelGrid, cases: list[dict], path: str) -> str:
    """Record ``grid`` with the slice counts of the training ``cases`` (model space) beside the weights."""
    z = [int(c["image"].shape[2] if "image" in c else c["latent"].shape[0]) for c in cases]
    out = ModelGrid(grid.size, grid.spacing, (min(z), max(z)) if z else grid.slices)
    return save_json(out.as_dict(), path, overwrite=True)


@dataclass
class Geometry:
    affine: list  # the input's voxel -> world affine (4x4)
    ras_affine: list  # the affine after reordering to RAS
    shape: list  # the input's voxel shape
    ras_shape: list  # shape after reordering to RAS
    resized: list  # model-space shape before the in-plane padding
    pad: list  # [[before, after], [before, after]] in-plane padding up to S x S
    spacing: list  # model-space voxel size (mm): the training spacing times ``zoom``
    zoom: float  # 1 unless the field of view had to shrink to fit S
    crop: list  # [[start, stop], [start, stop]]: the in-plane RAS box kept (the whole plane unless it was too wide)


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


def orient_ras(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reorder voxel axes to RAS (no resampling): (array, RAS affine)."""
    t = Orientation(axcodes="RAS", labels=_AXIS_LABELS)(
        MetaTensor(torch.as_tensor(np.ascontiguousarray(data))[None], affine=affine)
    )
    return np.ascontiguousarray(t[0].numpy()), np.asarray(t.affine, dtype=np.float64)


def _orient_back(data: np.ndarray, ras_affine: np.ndarray, affine: np.ndarray) -> np.ndarray:
    codes = "".join(nib.aff2axcodes(np.asarray(affine)))
    t = Orientation(axcodes=codes, labels=_AXIS_LABELS)(
        MetaTensor(torch.as_tensor(np.ascontiguousarray(data))[None], affine=ras_affine)
    )
    return np.ascontiguousarray(t[0].numpy())


def plan(ras_shape, ras_spacing, grid: ModelGrid) -> tuple[list[int], list, float]:
    """Model-space shape (before padding), in-plane padding and zoom for a RAS volume of ``ras_shape`` voxels."""
    extent = np.asarray(ras_shape, np.float64) * np.asarray(ras_spacing, np.float64)
    target = np.asarray(grid.spacing)
    zoom = max(1.0, *(extent[:2] / target[:2] / grid.size))
    zoom = 1.0 if zoom < 1.01 else zoom  # within a voxel's rounding of S: crop that voxel rather than zoom
    shape = [max(1, int(round(e))) for e in extent / (target * zoom)]
    shape[:2] = [min(s, grid.size) for s in shape[:2]]
    if ras_shape[2] == 1:
        shape[2] = 1  # a single slice (an informed-slice file) is never resampled along z
    pads = [[(grid.size - n) // 2, grid.size - n - (grid.size - n) // 2] for n in shape[:2]]
    return shape, pads, float(zoom)


def _resize(arr: np.ndarray, shape, kind: str) -> np.ndarray:
    if list(arr.shape) == list(shape):
        return arr
    down = any(s < a for s, a in zip(shape, arr.shape))
    resize = Resize(
        spatial_size=tuple(int(s) for s in shape),
        mode="nearest" if kind == "label" else "trilinear",
        anti_aliasing=kind != "label" and down,
    )
    return np.asarray(resize(torch.as_tensor(np.ascontiguousarray(arr), dtype=torch.float32)[None])[0])


def to_model_space(data: np.ndarray, affine: np.ndarray, grid: ModelGrid, kind: str = "image"):
    """RAS reorder, resample to the grid's spacing, pad in-plane to S x S. Returns (array, Geometry)."""
    if not isinstance(grid, ModelGrid):
        raise TypeError(f"grid must be a ModelGrid, got {type(grid).__name__}")
    if data.ndim != 3:
        raise Gem3dInputError(f"expected a 3D volume, got shape {data.shape}")
    ras, ras_affine = orient_ras(np.asarray(data, np.float32), affine)
    ras_shape, ras_spacing = list(ras.shape), nib.affines.voxel_sizes(ras_affine)
    crop = [[0, ras.shape[0]], [0, ras.shape[1]]]
    shape, pads, zoom = plan(ras.shape, ras_spacing, grid)
    if zoom > 1.0:  # too wide: keep the in-plane box of the foreground (one model voxel of margin), then plan again
        margin = [int(np.ceil(t / s)) for t, s in zip(grid.spacing[:2], ras_spacing[:2])] + [0]
        background = 0.0 if kind == "label" else float(ras.min())
        start, end = generate_spatial_bounding_box(ras[None], lambda x: x > background, margin=margin)
        if end[0] > start[0] and end[1] > start[1]:
            crop = [[int(start[i]), int(end[i])] for i in range(2)]
            ras = ras[crop[0][0] : crop[0][1], crop[1][0] : crop[1][1]]
            shape, pads, zoom = plan(ras.shape, ras_spacing, grid)
    t = torch.as_tensor(_resize(ras, shape, kind))[None]
    out = np.asarray(SpatialPad(spatial_size=(grid.size, grid.size, shape[2]), method="symmetric")(t)[0])
    out = out.round().astype(np.int16) if kind == "label" else out.astype(np.float32)
    spacing = [float(s) * zoom for s in grid.spacing]
    if shape[2] == 1 and ras.shape[2] == 1:
        spacing[2] = float(ras_spacing[2])
    geom = Geometry(
        np.asarray(affine).tolist(), ras_affine.tolist(), list(data.shape), ras_shape, shape, pads, spacing, zoom, crop
    )
    return out, geom


def from_model_space(arr: np.ndarray, geom: Geometry, kind: str = "image") -> np.ndarray:
    """Undo :func:`to_model_space`: crop the padding, resample to the RAS grid, reorder to the input's axes."""
    (px0, _), (py0, _) = geom.pad
    h, w, _ = geom.resized
    crop = np.asarray(arr, np.float32)[px0 : px0 + h, py0 : py0 + w, :]
    (x0, x1), (y0, y1) = geom.crop
    ras = np.zeros(geom.ras_shape, np.float32)  # outside the kept box: background
    ras[x0:x1, y0:y1] = _resize(crop, [x1 - x0, y1 - y0, geom.ras_shape[2]], kind)
    return _orient_back(ras, np.asarray(geom.ras_affine), np.asarray(geom.affine))
