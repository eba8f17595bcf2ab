"""Whole volumes (image + label, model space) from one or more datalists, for the 3D segmenter."""

from __future__ import annotations

import numpy as np
from monai.data import Dataset

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
