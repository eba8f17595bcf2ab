"""Abdominal CT-like phantoms: organs as deformed, labelled ellipsoids in Hounsfield units.

A second, non-brain label set for gem3d (AbdomenCT-1K's: 1 liver, 2 kidney, 3 spleen, 4 pancreas) whose mask labels
only some structures, so that every part of the pipeline is exercised without BraTS assumptions. Each patient has
its own body size, organ positions, sizes and shapes (a smooth random field bends every ellipsoid), contrast phase
(organ HU) and noise; the body, fat, spine and aorta are imaged but not labelled, as in AbdomenCT-1K.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import Gem3dInputError
from .label_set import LabelSet
from .phantom_dataset import write_dataset

ABDOMEN_CT = LabelSet({0: "background", 1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"})
EXTENT_MM = np.array([360.0, 360.0, 240.0])  # field of view (x, y, z), RAS

# organ, label, centre (mm; RAS: +x toward the patient's right, +y anterior), radii (mm), HU (portal-venous phase)
_ORGANS = [
    ("pancreas", 4, (-10.0, -5.0, -5.0), (55.0, 13.0, 16.0), 45.0),
    ("kidney_right", 2, (70.0, -55.0, -30.0), (24.0, 30.0, 52.0), 160.0),
    ("kidney_left", 2, (-70.0, -55.0, -25.0), (24.0, 30.0, 52.0), 160.0),
    ("spleen", 3, (-80.0, -25.0, 45.0), (30.0, 45.0, 50.0), 110.0),
    ("liver", 1, (60.0, 5.0, 50.0), (80.0, 75.0, 70.0), 95.0),
]


def _smooth_field(shape, rng: np.random.Generator, cells: int = 4) -> np.ndarray:
    """A smooth random field in about [-1, 1]: coarse noise upsampled with cubic splines."""
    coarse = rng.normal(0, 1, (cells, cells, cells))
    return ndimage.zoom(coarse, np.array(shape) / cells, order=3)[: shape[0], : shape[1], : shape[2]]


def make_ct_patient(size=(64, 64, 48), seed: int = 0) -> dict:
    """One CT-like patient: ``image`` (HU, float32), ``label`` (uint8), ``affine`` (RAS, mm) and ``params``."""
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 8:
        raise Gem3dInputError(f"CT phantom size must be three integers >= 8, got {size}")
    rng = np.random.default_rng(seed)
    spacing = EXTENT_MM / np.asarray(size)
    axes = [(np.arange(n) + 0.5) * s - e / 2 for n, s, e in zip(size, spacing, EXTENT_MM)]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    scale = float(rng.uniform(0.85, 1.1))  # body habitus
    z_shift = float(rng.uniform(-25, 25))  # which part of the abdomen the scan covers
    # body: an elliptic cylinder whose outline varies slowly along z, with subcutaneous fat
    rx, ry = 160.0 * scale * (1 + 0.05 * np.sin(z / 80.0)), 115.0 * scale
    r_body = np.sqrt((x / rx) ** 2 + ((y + 10) / ry) ** 2)
    fat_mm = float(rng.uniform(8, 25))
    hu = np.full(size, -1000.0, np.float32)
    hu[r_body < 1] = -95.0
    hu[r_body < 1 - fat_mm / 115.0] = float(rng.uniform(10, 40))  # muscle / mesentery
    hu[np.sqrt((x / 20) ** 2 + ((y + 75 * scale) / 18) ** 2) < 1] = 500.0  # vertebral bodies
    hu[np.sqrt(((x + 20) / 11) ** 2 + ((y + 45 * scale) / 11) ** 2) < 1] = float(rng.uniform(150, 220))  # aorta
    label = np.zeros(size, np.uint8)
    shape_noise = _smooth_field(size, rng)
    contrast = float(rng.uniform(0.8, 1.2))
    organs = {}
    for name, value, centre, radii, organ_hu in _ORGANS:
        c = np.array(centre) * scale + rng.normal(0, 6, 3) + np.array([0, 0, z_shift])
        r = np.array(radii) * scale * rng.uniform(0.85, 1.15, 3)
        angle = np.deg2rad(rng.uniform(-15, 15))
        u = np.cos(angle) * (x - c[0]) + np.sin(angle) * (y - c[1])
        v = -np.sin(angle) * (x - c[0]) + np.cos(angle) * (y - c[1])
        inside = (u / r[0]) ** 2 + (v / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2 + 0.25 * shape_noise < 1
        inside &= r_body < 1 - fat_mm / 115.0
        label[inside] = value
        hu[inside] = organ_hu * contrast + rng.normal(0, 5)
        organs[name] = {"centre_mm": c.round(1).tolist(), "radii_mm": r.round(1).tolist()}
    noise = float(rng.uniform(8, 18))
    hu = ndimage.gaussian_filter(hu, 0.6) + rng.normal(0, noise, size)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -EXTENT_MM / 2 + spacing / 2 + rng.uniform(-5, 5, 3)
    params = {
        "seed": int(seed),
        "scale": round(scale, 4),
        "contrast": round(contrast, 4),
        "noise_hu": round(noise, 2),
        "organs": organs,
        "voxels_per_label": {int(k): int((label == k).sum()) for k in ABDOMEN_CT.names},
    }
    return {"image": hu.astype(np.float32), "label": label, "affine": affine, "params": params}


def build_ct_dataset(
    out_dir: str,
    num_train: int = 24,
    num_test: int = 6,
    size=(64, 64, 48),
    seed: int = 0,
    previews: int = 4,
    overwrite: bool = False,
    coordinates: bool = False,
    grades: bool = False,
) -> str:
    """Write the CT phantom dataset (NIfTI in HU, labels, MSD-style datalist with the label set, previews).

    ``coordinates`` (template coordinate maps) and ``grades`` (tumour grades) exist for the brain demo only."""
    for name, value in (("coordinates", coordinates), ("grades", grades)):
        if value:
            raise Gem3dInputError(f"the CT phantoms have no {name} (demo_{name} is for the brain demo)")
    spec = {
        "kind": "abdomen_ct",
        "num_train": int(num_train),
        "num_test": int(num_test),
        "size": [int(s) for s in size],
        "seed": int(seed),
    }
    header = {
        "name": "gem3d-ct-phantoms",
        "description": "Abdominal CT-like phantoms: organs as deformed labelled ellipsoids in HU (AbdomenCT-1K labels)",
        "modality": {"0": "CT"},
    }
    return write_dataset(
        out_dir,
        lambda i: make_ct_patient(size, seed * 100003 + i),
        spec,
        ABDOMEN_CT,
        header,
        "ct",
        previews,
        overwrite,
        preview_window=(-160.0, 240.0),  # the abdominal window gem3d's CT normalisation uses
    )
