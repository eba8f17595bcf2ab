"""Training data in memory: preprocessed volumes and the axial slices the 2D autoencoder trains on."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import Gem3dInputError
from .conditioning import mask_onehot
from .datalist import load_case, read_datalist


def load_volumes(
    datalist: str, section: str, grid, num_labels: int, modality="mri", limit=None, normalise=True
) -> list[dict]:
    """Load and preprocess every case of a datalist section (image and label in model space)."""
    items = read_datalist(datalist, (section,))[section]
    if limit:
        items = items[: int(limit)]
    cases = [
        load_case(item, grid, num_labels, modality, normalise=normalise)
        for item in tqdm(items, desc=f"loading {section}", leave=False)
    ]
    for case in cases:
        if "label" not in case:
            raise Gem3dInputError(f"{case['image_path']}: training needs a label (mask) for every image")
    return cases


class SliceDataset(Dataset):
    """Axial slices that contain anatomy (foreground fraction above ``min_foreground``), as image/label pairs.

    With ``num_labels`` > 0 (the joint image + mask autoencoder) each item has 1 + ``num_labels`` channels: the
    image and the one-hot mask slice."""

    def __init__(self, volumes: list[dict], min_foreground: float = 0.02, stride: int = 1, num_labels: int = 0):
        self.slices, self.masks, self.num_labels = [], [], int(num_labels)
        for case in volumes:
            img = case["image"]
            for z in range(0, img.shape[2], stride):
                if (case["label"][:, :, z] > 0).mean() >= min_foreground:
                    self.slices.append(np.ascontiguousarray(img[:, :, z]))
                    if self.num_labels:
                        self.masks.append(np.ascontiguousarray(case["label"][:, :, z]))
        if not self.slices:
            raise Gem3dInputError("no slice with anatomy found in the training volumes")

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> dict:
        x = torch.from_numpy(self.slices[i])[None]
        if self.num_labels:
            x = torch.cat([x, mask_onehot(self.masks[i], self.num_labels)])
        return {"image": x, "label": x}


class SliceStackDataset(Dataset):
    """Stacks of ``depth`` consecutive axial slices, (1, S, S, depth), for the decoder with cross-slice layers.

    Each item is a stack from volume ``i % len(volumes)`` starting at a random slice whose centre slice shows anatomy
    (``stacks_per_volume`` items per volume and epoch); ``depth`` None gives every volume whole, once (validation)."""

    def __init__(
        self, volumes: list[dict], depth: int | None = 16, stacks_per_volume: int = 4, min_foreground: float = 0.02
    ):
        self.volumes = [np.ascontiguousarray(c["image"], np.float32) for c in volumes]
        self.depth, self.per_volume = depth, int(stacks_per_volume) if depth else 1
        self.starts = []
        for case, img in zip(volumes, self.volumes):
            if depth and img.shape[2] < depth:
                raise Gem3dInputError(
                    f"{case['image_path']}: {img.shape[2]} slices, fewer than the stack depth {depth}"
                )
            fg = (case["label"] > 0).mean(axis=(0, 1))
            last = img.shape[2] - depth if depth else 0
            self.starts.append([s for s in range(last + 1) if not depth or fg[s + depth // 2] >= min_foreground] or [0])

    def __len__(self) -> int:
        return len(self.volumes) * self.per_volume

    def __getitem__(self, i: int) -> dict:
        v = i % len(self.volumes)
        img = self.volumes[v]
        if self.depth:
            start = int(np.random.choice(self.starts[v]))
            img = img[:, :, start : start + self.depth]
        x = torch.from_numpy(np.ascontiguousarray(img))[None]
        return {"image": x, "label": x}
