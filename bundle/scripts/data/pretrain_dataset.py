"""Unlabelled volumes with anatomical coordinates, and random pretext patches of them (``pretrain_segmenter.json``,
``train_coordinates.json``).

Coordinates come from each case's map (``coordinates`` in the datalist: the demo generator's exact maps) or, for
volumes without one (gem3d's synthetic volumes, real scans), from the coordinate regressor when one is given.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..errors import Gem3dInputError
from .coordinates import load_coordinates
from .datalist import read_datalist
from .slices import load_volumes


@torch.inference_mode()
def predict_coordinates(regressor: torch.nn.Module, image: np.ndarray, device) -> np.ndarray:
    """(S, S, Z) image -> (3, S, S, Z) normalised template coordinates from the regressor (whole volume)."""
    x = torch.as_tensor(image, dtype=torch.float32)[None, None].to(device)
    return regressor(x)[0].float().cpu().numpy()


def load_unlabelled(sources, grid, num_labels: int, modality="mri", regressor=None, device="cpu", limit=None):
    """[[datalist, section], ...] -> dicts with ``image`` (S, S, Z), ``anatomy`` (bool, the label's foreground)
    and ``coordinates`` (3, S, S, Z) or None. The masks only say where the anatomy is; no label trains anything."""
    cases = []
    for datalist, section in sources:
        items = read_datalist(datalist, (section,))[section]
        volumes = load_volumes(datalist, section, grid, num_labels, modality, limit)
        for item, case in zip(items, volumes):
            coords = None
            if item.get("coordinates"):
                coords = load_coordinates(item["coordinates"], grid)
                if coords.shape[1:] != case["image"].shape:
                    raise Gem3dInputError(f"{item['coordinates']}: coordinate map and image disagree in model space")
            elif regressor is not None:
                coords = predict_coordinates(regressor, case["image"], device)
            cases.append(
                {"id": case["id"], "image": case["image"], "anatomy": case["label"] > 0, "coordinates": coords}
            )
    return cases


class PretextDataset(Dataset):
    """``samples`` random patches (``patch`` None: whole volumes, in order) of ``cases``, each centred on anatomy:
    {"image": corrupted (1, P, P, P), "label": (5, P, P, P) = clean image, coordinates (zeros where unknown),
    anatomy (0 where coordinates are unknown, so they are not supervised there)}. ``corruption(x0, rng)``: a
    pretext transform (``engines.pretext``) or None (the coordinate regressor: clean input)."""

    def __init__(self, cases: list[dict], patch=(32, 32, 32), samples: int = 64, corruption=None):
        if not cases:
            raise Gem3dInputError("no volumes to pretrain on")
        self.cases, self.patch, self.corruption = cases, tuple(patch) if patch else None, corruption
        self.samples = int(samples) if self.patch else len(cases)
        self.centres = [np.argwhere(c["anatomy"]) for c in tqdm(cases, desc="anatomy", leave=False)]

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> dict:
        rng = np.random.default_rng(np.random.randint(0, 2**31))  # seeded by set_determinism, one stream per item
        index = i % len(self.cases) if self.patch is None else int(rng.integers(len(self.cases)))
        case = self.cases[index]
        coords = case["coordinates"]
        known = coords is not None
        stack = np.concatenate(
            [
                case["image"][None],
                coords if known else np.zeros((3, *case["image"].shape), np.float32),
                (case["anatomy"] & known)[None].astype(np.float32),
            ]
        )
        if self.patch:
            stack = self._crop(stack, self.centres[index], rng)
        target = torch.from_numpy(np.ascontiguousarray(stack, dtype=np.float32))
        x0 = target[:1]
        return {"image": self.corruption(x0, rng) if self.corruption else x0.clone(), "label": target}

    def _crop(self, stack: np.ndarray, centres: np.ndarray, rng) -> np.ndarray:
        shape = np.asarray(stack.shape[1:])
        patch = np.minimum(self.patch, shape)
        centre = centres[rng.integers(len(centres))] if len(centres) else shape // 2
        start = np.clip(centre - patch // 2, 0, shape - patch)
        box = tuple(slice(int(a), int(a + p)) for a, p in zip(start, patch))
        return stack[(slice(None), *box)]
