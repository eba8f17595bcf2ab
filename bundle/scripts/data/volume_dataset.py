"""Whole volumes (image + label, model space) from one or more datalists, for the 3D segmenter."""

from __future__ import annotations

import numpy as np
from monai.data import Dataset
from scipy import ndimage

from ..errors import Gem3dInputError
from .datalist import read_datalist
from .slices import load_volumes


def load_sources(sources, grid, num_labels: int, modality: str = "mri", limit=None) -> list[dict]:
    """``sources``: [[datalist, section], ...] (e.g. real training + a gem3d-enhanced set). Returns MONAI-style
    dicts with channel-first ``image`` (float32) and ``label`` (int64), the case id and the model-space spacing."""
    cases = []
    for datalist, section in sources:
        for case in load_volumes(datalist, section, grid, num_labels, modality, limit):
            cases.append(
                {
                    "image": case["image"][None].astype(np.float32),
                    "label": case["label"][None].astype(np.int64),
                    "id": case["id"],
                    "spacing": np.asarray(case["geometry"].spacing, np.float32),
                }
            )
    return cases


def volume_dataset(sources, grid, num_labels: int, modality: str = "mri", limit=None, transform=None):
    return Dataset(load_sources(sources, grid, num_labels, modality, limit), transform=transform)


def class_items(
    sources, grid, num_labels: int, modality: str, class_key: str, classes, limit=None, roi=None, roi_labels=()
) -> list[dict]:
    """Volumes with a class per case (``item[class_key]``, one of ``classes``; e.g. the graded demo's "class") from
    [[datalist, section], ...]: MONAI-style dicts with channel-first ``image`` and ``label`` = the class index.

    ``roi`` (voxels per side): the image is cropped to a cube centred on the case's ``roi_labels`` (its lesion),
    located by the mask, so that a classifier sees the lesion rather than a whole head it has to search."""
    classes = list(classes)
    out = []
    for datalist, section in sources:
        items = read_datalist(datalist, (section,))[section]
        items = items[: int(limit)] if limit else items
        for it in items:
            if it.get(class_key) not in classes:
                raise Gem3dInputError(
                    f"datalist {datalist} case {it['id']}: {class_key!r} is {it.get(class_key)!r}, not one of {classes}"
                )
        cases = load_volumes(datalist, section, grid, num_labels, modality, limit)
        out += [
            {
                "image": (roi_crop(c["image"], c["label"], roi_labels, roi) if roi else c["image"])[None].astype(
                    np.float32
                ),
                "label": classes.index(it[class_key]),
                "id": c["id"],
            }
            for it, c in zip(items, cases)
        ]
    return out


def roi_crop(image: np.ndarray, label: np.ndarray, labels, size: int) -> np.ndarray:
    """A ``size``^3 crop of ``image`` centred on the largest connected region of ``labels`` in ``label`` (zero-padded
    where it leaves the volume; centred on the volume when there is none)."""
    regions, count = ndimage.label(np.isin(label, list(labels)))
    if count:
        largest = 1 + int(np.argmax(ndimage.sum_labels(np.ones_like(regions), regions, range(1, count + 1))))
        centre = np.argwhere(regions == largest).mean(0).round().astype(int)
    else:
        centre = np.asarray(image.shape) // 2
    padded = np.pad(image, size, mode="constant")
    start = centre + size - size // 2
    return padded[tuple(slice(a, a + size) for a in start)]
