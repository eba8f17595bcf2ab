"""BraTS-like demo patients made from real anatomy: the MNI ICBM152 2009a template shipped inside ``nilearn``.

Each patient is the template's grey/white-matter maps (and a CSF map derived from them) warped by a random affine
and a smooth elastic field, given 0-3 tumours with BraTS sub-regions, and imaged by a per-patient "scanner"
(FLAIR-like tissue contrast, gamma, gain, bias field, blur, Rician noise). Labels: 0 background, 1 brain,
2 edema, 3 necrotic / non-enhancing core, 4 enhancing tumour. Nothing is downloaded: the files are read from the
installed package.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..errors import Gem3dInputError
from .label_set import BRATS
from .model_space import orient_ras
from .phantom_dataset import write_dataset


@dataclass
class Template:
    tissue: torch.Tensor  # (4, X, Y, Z): gm, wm, csf, brain hull; RAS voxel order, 1 mm
    affine: np.ndarray  # voxel -> world (mm) of the cropped template
    extent_mm: np.ndarray  # size of the cropped field of view in mm


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Load the template's tissue maps, derive CSF and the brain hull, crop to the head."""
    try:  # nilearn's own loaders read the templates it ships (offline), each scaled to [0, 1]
        from nilearn.datasets import load_mni152_gm_template, load_mni152_template, load_mni152_wm_template
    except ImportError as exc:
        raise Gem3dInputError(f"the demo data needs nilearn's MNI templates: {exc}") from exc
    maps = {}
    affine = None
    for key, load in (("t1", load_mni152_template), ("gm", load_mni152_gm_template), ("wm", load_mni152_wm_template)):
        img = load(resolution=1)
        maps[key], affine = orient_ras(np.asarray(img.dataobj, dtype=np.float32), img.affine)
    gm, wm, t1 = maps["gm"], maps["wm"], maps["t1"]
    # The template is skull-stripped-ish; the intracranial hull is tissue plus the CSF spaces it encloses.
    hull = ndimage.binary_closing((gm + wm) > 0.15, iterations=4)
    hull = ndimage.binary_fill_holes(hull)
    hull = ndimage.binary_erosion(hull, iterations=1) | ((gm + wm) > 0.5)
    hull_f = ndimage.gaussian_filter(hull.astype(np.float32), 0.7)
    csf = np.clip(hull_f - gm - wm, 0.0, 1.0)
    # T1 darkness inside the hull marks ventricles and sulci: sharpen the CSF map with it.
    csf = np.clip(np.maximum(csf, hull_f * (t1 < 0.25 * t1[hull].mean())), 0, 1) * hull_f
    idx = np.argwhere(hull)
    lo, hi = np.maximum(idx.min(0) - 4, 0), np.minimum(idx.max(0) + 5, hull.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    stack = np.stack([gm[crop], wm[crop], csf[crop], hull_f[crop]])
    crop_affine = affine.copy()
    crop_affine[:3, 3] = affine[:3, :3] @ lo + affine[:3, 3]
    extent = np.asarray(stack.shape[1:], dtype=np.float64) * np.abs(np.diag(affine)[:3])
    return Template(torch.from_numpy(stack), crop_affine, extent)


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _warp_anatomy(tpl: Template, size: tuple[int, int, int], rng: np.random.Generator, gen: torch.Generator):
    """Sample the template tissue maps on the output grid through a random affine + elastic deformation.

    Returns the (4, X, Y, Z) tissue maps and, for every output voxel, the template (MNI) coordinate in mm it was
    sampled from, (X, Y, Z, 3): the exact inverse of the deformation."""
    size = tuple(int(s) for s in size)
    # Normalised output coordinates in [-1, 1] (align_corners=True convention), as (X, Y, Z, 3).
    axes = [torch.linspace(-1, 1, s, dtype=torch.float64) for s in size]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)
    scale = rng.uniform(0.9, 1.1, 3) * rng.uniform(0.95, 1.05)
    rot = _rotation(rng.uniform(-8, 8, 3))
    shift = rng.uniform(-0.04, 0.04, 3)
    # Rotate in millimetres (not normalised units) so that an anisotropic field of view is not sheared.
    half = torch.from_numpy(tpl.extent_mm / 2.0)
    mat = torch.from_numpy(rot @ np.diag(1.0 / scale))
    pts = ((grid.reshape(-1, 3) * half) @ mat.T) / half + torch.from_numpy(shift)
    # Smooth elastic field: random vectors on a coarse 5^3 lattice, upsampled (about +-3% of the field of view).
    coarse = torch.randn((1, 3, 5, 5, 5), generator=gen, dtype=torch.float64) * float(rng.uniform(0.015, 0.035))
    disp = F.interpolate(coarse, size=size, mode="trilinear", align_corners=True)[0].permute(1, 2, 3, 0)
    pts = pts.reshape(*size, 3) + disp
    # Input (1, C, X, Y, Z): grid_sample reads the last coordinate as the first spatial axis, hence the flip.
    out = F.grid_sample(tpl.tissue[None], pts.flip(-1)[None].float(), mode="bilinear", align_corners=True)
    # normalised (align_corners) template coordinates -> template voxel indices -> MNI millimetres
    index = (pts.numpy() + 1.0) / 2.0 * (np.asarray(tpl.tissue.shape[1:], np.float64) - 1.0)
    mni = index @ tpl.affine[:3, :3].T + tpl.affine[:3, 3]
    return out[0].numpy(), mni.astype(np.float32)


# Tumour grades of the graded demo (``grades=True``, one tumour per patient): "HGG" has a thin enhancing rim (label
# 4) around a necrotic core (label 3); "LGG" is a non-enhancing core (label 3) inside its edema, no rim.
GRADES = ("HGG", "LGG")


def _tumours(
    brain: np.ndarray, spacing: np.ndarray, rng: np.random.Generator, count: int, grade: str | None = None
) -> np.ndarray:
    """Labels 2/3/4 for ``count`` tumours with irregular, nested edema / core / enhancing regions. ``grade`` "HGG":
    a larger necrotic core inside a thin enhancing rim; "LGG": edema and a non-enhancing core only (both larger than
    ungraded tumours, so that the core's structure is several voxels across)."""
    labels = np.zeros(brain.shape, dtype=np.uint8)
    inner = ndimage.binary_erosion(brain > 0.9, iterations=max(2, brain.shape[0] // 12))
    candidates = np.argwhere(inner)
    if count == 0 or len(candidates) == 0:
        return labels
    coords = np.stack(np.meshgrid(*[np.arange(s) for s in brain.shape], indexing="ij"), -1).astype(np.float32)
    mm = coords * spacing.astype(np.float32)
    for _ in range(count):
        centre = candidates[rng.integers(len(candidates))] * spacing
        r_edema = rng.uniform(10.0, 22.0) if grade is None else rng.uniform(16.0, 26.0)  # mm; graded: visible cores
        axes = rng.uniform(0.75, 1.25, 3)
        rot = _rotation(rng.uniform(-180, 180, 3)).astype(np.float32)
        d = ((mm - centre.astype(np.float32)) @ rot.T) / axes.astype(np.float32)
        dist = np.linalg.norm(d, axis=-1)
        # Low-frequency radial noise makes the boundary lobulated instead of a perfect ellipsoid.
        noise = ndimage.zoom(rng.normal(0, 1, (4, 4, 4)), np.array(brain.shape) / 4.0, order=3)[
            : brain.shape[0], : brain.shape[1], : brain.shape[2]
        ]
        dist = dist * (1.0 + 0.12 * noise)
        r_core = r_edema * rng.uniform(0.45, 0.7)
        r_necro = r_core * (rng.uniform(0.3, 0.65) if grade is None else rng.uniform(0.55, 0.75))
        inside = brain > 0.5
        labels[(dist < r_edema) & inside & (labels == 0)] = 2
        if grade == "LGG":
            labels[(dist < r_core) & inside] = 3
            continue
        labels[(dist < r_core) & inside] = 4
        labels[(dist < r_necro) & inside] = 3
    return labels


def _scanner(tissue: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """FLAIR-like image: CSF dark, GM brighter than WM, edema bright; then the patient's scanner effects."""
    gm, wm, csf, hull = tissue
    params = {
        "gm": float(rng.uniform(0.58, 0.68)),
        "wm": float(rng.uniform(0.40, 0.50)),
        "csf": float(rng.uniform(0.05, 0.15)),
        "gamma": float(rng.uniform(0.75, 1.35)),
        "gain": float(rng.uniform(0.8, 1.2)),
        "bias": rng.normal(0, 0.12, 4).round(4).tolist(),
        "blur_vox": float(rng.uniform(0.0, 0.8)),
        "noise": float(rng.uniform(0.008, 0.03)),
    }
    img = gm * params["gm"] + wm * params["wm"] + csf * params["csf"]
    tumour_int = {2: rng.uniform(0.8, 0.95), 4: rng.uniform(0.68, 0.8), 3: rng.uniform(0.3, 0.45)}
    for lab, val in tumour_int.items():
        region = ndimage.gaussian_filter((labels == lab).astype(np.float32), 0.6)
        img = img * (1 - region) + val * region * hull
    img = np.clip(img, 0, None) ** params["gamma"] * params["gain"]
    # Multiplicative bias field: a smooth linear + radial polynomial across the field of view.
    x, y, z = np.meshgrid(*[np.linspace(-1, 1, s) for s in img.shape], indexing="ij")
    b = params["bias"]
    img = img * np.exp(b[0] * x + b[1] * y + b[2] * z + b[3] * (x**2 + y**2 + z**2))
    if params["blur_vox"] > 0.05:
        img = ndimage.gaussian_filter(img, params["blur_vox"])
    n1, n2 = rng.normal(0, params["noise"], (2, *img.shape))
    img = np.sqrt((img + n1) ** 2 + n2**2) * (hull > 0.5)  # Rician magnitude noise; skull-stripped like BraTS
    img = img / max(np.percentile(img[hull > 0.5], 99.5), 1e-6)
    return np.clip(img, 0, 1.5).astype(np.float32), params


def make_patient(
    size=(64, 64, 64), seed: int = 0, max_tumours: int = 3, coordinates: bool = False, grade: str | None = None
) -> dict:
    """One demo patient: ``image`` (float32), ``label`` (uint8), ``affine`` (RAS, mm) and its ``params``; with
    ``coordinates`` also the MNI coordinate (mm) every voxel came from, (X, Y, Z, 3); with ``grade`` (one of
    ``GRADES``) one tumour of that grade."""
    if grade is not None and grade not in GRADES:
        raise Gem3dInputError(f"tumour grade must be one of {GRADES}, not {grade!r}")
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 8:
        raise Gem3dInputError(f"demo volume size must be three integers >= 8, got {size}")
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(int(seed))
    tpl = load_template()
    tissue, mni = _warp_anatomy(tpl, size, rng, gen)
    tissue = tissue.astype(np.float32)
    spacing = tpl.extent_mm / np.asarray(size)
    brain = tissue[3]
    count = int(rng.integers(0, max_tumours + 1)) if grade is None else 1
    tumour = _tumours(brain, spacing, rng, count, grade)
    label = np.where(brain > 0.5, 1, 0).astype(np.uint8)
    label[tumour > 0] = tumour[tumour > 0]
    image, scanner = _scanner(tissue, tumour, rng)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = -0.5 * tpl.extent_mm + rng.uniform(-5, 5, 3)  # centred field of view, patient-specific origin
    volumes = {int(k): int((label == k).sum()) for k in range(5)}
    patient = {
        "image": image,
        "label": label,
        "affine": affine,
        "params": {"seed": int(seed), "tumours": count, "scanner": scanner, "voxels_per_label": volumes},
    }
    if grade is not None:
        patient["params"]["class"] = grade
    if coordinates:
        patient["coordinates"] = mni
    return patient


def build_demo_dataset(
    out_dir: str,
    num_train: int = 32,
    num_test: int = 8,
    size=(64, 64, 64),
    seed: int = 0,
    previews: int = 4,
    overwrite: bool = False,
    coordinates: bool = False,
    grades: bool = False,
) -> str:
    """Write the demo dataset (NIfTI images and labels, an MSD-style ``datalist.json``, previews, statistics).

    ``coordinates``: also each patient's MNI coordinate map (``coordinates`` in the datalist, (X, Y, Z, 3) mm on the
    image's grid; the same images as without). ``grades``: every patient has tumours of one grade, "HGG" and "LGG"
    in turn (``class`` in the datalist; other patients than the default set). Returns the datalist path. An existing
    complete dataset with the same parameters is reused; a folder with other content is never overwritten unless
    ``overwrite`` is set.
    """
    spec = {"num_train": int(num_train), "num_test": int(num_test), "size": [int(s) for s in size], "seed": int(seed)}
    for key, value in (("coordinates", coordinates), ("grades", grades)):
        if value:  # only then: the spec of existing demo sets stays what it was
            spec[key] = True

    def patient(i: int) -> dict:
        grade = GRADES[i % len(GRADES)] if grades else None
        p = make_patient(size, seed=seed * 100003 + i, coordinates=coordinates, grade=grade)
        title = f"demo_{i:03d} ({p['params']['tumours']} tumours{', ' + grade if grade else ''})"
        return {**p, "title": title}

    header = {
        "name": "gem3d-demo",
        "description": "BraTS-like phantoms from the MNI ICBM152 2009a template (see docs/data_license.txt)",
        "modality": {"0": "FLAIR"},
    }
    return write_dataset(out_dir, patient, spec, BRATS, header, "demo", previews, overwrite)


def build_demo_with_coordinates(out_dir: str) -> str:
    """The default demo set (the same patients) with every patient's MNI coordinate map (pretraining's default)."""
    return build_demo_dataset(out_dir, coordinates=True)


def ensure_demo_dataset(dataset_dir: str, datalist: str, build=build_demo_dataset) -> str:
    """The main job's embedded default: ``build`` the default demo set (brain; ``ct_phantom.build_ct_dataset`` for
    the CT phantoms) if ``datalist`` is the (missing) demo datalist.

    A user datalist is never touched; a missing user datalist is an error.
    """
    if os.path.isfile(datalist):
        return datalist
    if os.path.abspath(datalist) != os.path.abspath(os.path.join(dataset_dir, "datalist.json")):
        raise Gem3dInputError(f"datalist not found: {datalist}")
    return build(dataset_dir)


def build_graded_demo(out_dir: str, num_test: int = 24) -> str:
    """The graded demo set (tumours of one grade per patient, HGG and LGG in turn; ``class`` in the datalist) with
    more test patients than the default, so that a classifier's accuracy is measured on 24 cases, not 8."""
    return build_demo_dataset(out_dir, num_test=num_test, grades=True)
