"""Datalists (MSD style) and their validation; loading of cases into model space.

Any MSD-style ``dataset.json`` / ``datalist.json`` works (``training`` / ``test`` lists of ``{"image", "label"}``),
read by MONAI's ``load_decathlon_datalist``. MSD Task01 BrainTumour gets a datalist of its own
(``write_brats_datalist``: FLAIR channel, labels mapped to gem3d's BraTS label set).
"""

from __future__ import annotations

import json
import os
from typing import Sequence

import nibabel as nib
import numpy as np
from monai.data import check_missing_files, load_decathlon_datalist

from ..errors import Gem3dInputError
from ..io import load_nifti, save_json
from .label_set import BRATS
from .model_space import ModelGrid, normalise_intensity, to_model_space

# MSD Task01 labels (1 edema, 2 non-enhancing tumour, 3 enhancing) -> gem3d (2 edema, 3 core, 4 enhancing).
BRATS_LABEL_MAP = {1: 2, 2: 3, 3: 4}


def read_datalist(path: str, sections: Sequence[str] = ("training",), base_dir: str | None = None) -> dict:
    """Read an MSD-style datalist (MONAI's ``load_decathlon_datalist``); return ``{section: [items]}`` with absolute
    paths, one path per key (the first of a list) and an ``id``. Every file is checked (``check_missing_files``)."""
    if not os.path.isfile(path):
        raise Gem3dInputError(f"datalist not found: {path}")
    out = {}
    # absolute even for a relative datalist path: items are handed to jobs that run from other folders
    base_dir = os.path.abspath(base_dir or os.path.dirname(os.path.abspath(path)))
    for section in sections:
        try:
            items = load_decathlon_datalist(path, True, section, base_dir)
        except json.JSONDecodeError as exc:
            raise Gem3dInputError(f"datalist {path} is not valid JSON: {exc}") from exc
        except (ValueError, IndexError):  # no such section, or an empty MSD test list
            items = []
        except TypeError as exc:
            raise Gem3dInputError(f"datalist {path} section '{section}': {exc}") from exc
        if not items:
            raise Gem3dInputError(f"datalist {path} has no or an empty '{section}' list")
        items = [
            {k: v[0] if k in ("image", "label") and isinstance(v, list) else v for k, v in it.items()} for it in items
        ]
        for item in items:  # MONAI resolves image and label only; coordinate maps (demo_phantom) too
            if isinstance(item.get("coordinates"), str):
                item["coordinates"] = os.path.join(base_dir, item["coordinates"])
        missing = check_missing_files(items, ("image", "label", "coordinates"), allow_missing_keys=True)
        if missing:
            raise Gem3dInputError(
                f"datalist {path} section '{section}': file not found: {missing[0]} ({len(missing)} missing)"
            )
        for item in items:
            item.setdefault("id", _case_id(item.get("image") or item.get("label")))
        out[section] = items
    return out


def _case_id(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def write_brats_datalist(root_dir: str, output: str, val_frac: float = 0.2, seed: int = 0) -> str:
    """Write a gem3d datalist for MSD Task01 BrainTumour (already downloaded under ``root_dir``, read through MONAI's
    ``DecathlonDataset``): the FLAIR channel, MSD labels mapped to gem3d's BraTS label set (brain = non-zero FLAIR),
    the validation split as the test section. Returns ``output``."""
    from monai.apps import DecathlonDataset

    task_dir = os.path.join(root_dir, "Task01_BrainTumour")
    if not os.path.isfile(os.path.join(task_dir, "dataset.json")):
        raise Gem3dInputError(
            f"{task_dir}/dataset.json not found: download MSD Task01 (monai.apps.DecathlonDataset(download=True)) "
            "on a machine with internet access, then point dataset_dir at its parent folder"
        )
    sections = {}
    for section, name in (("training", "training"), ("validation", "test")):
        ds = DecathlonDataset(
            root_dir, "Task01_BrainTumour", section, download=False, val_frac=val_frac, seed=seed, cache_rate=0.0
        )
        sections[name] = [
            {**entry, "id": _case_id(entry["image"]), "channel": 0, "label_map": BRATS_LABEL_MAP} for entry in ds.data
        ]
        if not sections[name]:
            raise Gem3dInputError(f"{task_dir} holds no {section} cases")
    content = {"name": "MSD Task01 BrainTumour (FLAIR) for gem3d", **BRATS.as_dict(), **sections}
    return save_json(content, output, overwrite=False)


def check_label_values(label: np.ndarray, num_labels: int, path: str) -> None:
    values = np.unique(label)
    bad = values[(values < 0) | (values >= num_labels) | (values != np.round(values))]
    if len(bad):
        raise Gem3dInputError(
            f"label file {path} has values {bad[:8].tolist()} outside the label set 0..{num_labels - 1}"
        )


def load_case(
    item: dict, grid: ModelGrid, num_labels: int, modality: str = "mri", ct_window=(-160.0, 240.0), normalise=True
) -> dict:
    """Load, validate and bring one case into model space. Returns image/label (S, S, Z), geometry and id.

    ``normalise=False`` keeps the intensities (volumes gem3d wrote are already in model intensities)."""
    image, affine = load_nifti(item["image"], "image", rank=None)
    if image.ndim == 4:
        image = image[..., int(item.get("channel", 0))]
    if image.ndim != 3:
        raise Gem3dInputError(f"image file {item['image']} has rank {image.ndim}; expected a 3D volume")
    out = {"id": item.get("id", _case_id(item["image"])), "image_path": item["image"]}
    label = None
    if "label" in item:
        label, l_affine = load_nifti(item["label"], "label", rank=3)
        if label.shape != image.shape:
            raise Gem3dInputError(
                f"label {item['label']} has shape {label.shape} but image {item['image']} has {image.shape}"
            )
        if not np.allclose(l_affine, affine, atol=1e-3):
            raise Gem3dInputError(f"label {item['label']} and image {item['image']} have different affines")
        label = np.asarray(label)
        if item.get("label_map"):
            mapped = np.where(image > 0, 1, 0).astype(np.int16)  # BraTS: brain = non-zero FLAIR
            for src, dst in item["label_map"].items():
                mapped[label == int(src)] = dst
            label = mapped
        check_label_values(label, num_labels, item["label"])
        out["label"], out["geometry"] = to_model_space(label, affine, grid, "label")
    image = np.asarray(image, dtype=np.float32)
    image = normalise_intensity(image, modality, ct_window) if normalise else image
    out["image"], geom = to_model_space(image, affine, grid, "image")
    out.setdefault("geometry", geom)
    return out


def read_mask(path: str, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """A 3D label map and its affine, checked against the label set; an empty mask is refused."""
    mask, affine = load_nifti(path, "mask", rank=3)
    mask = np.asarray(mask)
    check_label_values(mask, num_labels, path)
    if not (mask > 0).any():
        raise Gem3dInputError(f"mask {path} is empty (all background): nothing to synthesize")
    return mask.astype(np.int16), affine


def nifti_shape(path: str) -> tuple:
    """Shape from the header alone (cheap validation before long work)."""
    try:
        return tuple(nib.load(path).shape)
    except Exception as exc:
        raise Gem3dInputError(f"{path} is not a readable NIfTI image: {exc}") from exc
