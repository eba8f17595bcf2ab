"""Training samples for the diffusion models, drawn from the latent cache."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..errors import Gem3dInputError
from .conditioning import window_condition


def _generator(seed: int | None, index: int) -> torch.Generator:
    """Fixed draws for validation (``seed``); fresh draws otherwise, different for every index (and so for every
    DDP rank, whose samplers hand out different indices)."""
    base = seed if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
    return torch.Generator().manual_seed(base * 1_000_003 + index)


class WindowDataset(Dataset):
    """Random windows of n consecutive slice latents with their conditions; the informed slice is a random slice of
    the window (GEM-3D's training scheme). ``mask_only``: no informed slice (the Make-A-Volume-style baseline)."""

    def __init__(self, cache: dict, window: int, samples: int, seed: int | None = None, mask_only: bool = False):
        self.cases, self.scale = cache["cases"], float(cache["scale"])
        self.window, self.samples, self.seed = int(window), int(samples), seed
        self.mask_only = bool(mask_only)
        if not self.cases:
            raise Gem3dInputError("the latent cache holds no case")
        short = [c["id"] for c in self.cases if c["latent"].shape[0] < self.window]
        if short:
            raise Gem3dInputError(f"cases with fewer slices than the window ({self.window}): {short[:5]}")

    def __len__(self) -> int:
        return self.samples

    def __getitem__(self, i: int) -> dict:
        g = _generator(self.seed, i)
        case = self.cases[int(torch.randint(len(self.cases), (1,), generator=g))]
        z_total, n = case["latent"].shape[0], self.window
        s = int(torch.randint(0, z_total - n + 1, (1,), generator=g))
        k = int(torch.randint(0, n, (1,), generator=g))
        lat = case["latent"][s : s + n].float() * self.scale
        cond = window_condition(case["mask"][s : s + n], lat[k], torch.arange(n) - k, self.mask_only)
        return {"image": lat.permute(1, 0, 2, 3).contiguous(), "condition": cond}


class PositionedSliceDataset(Dataset):
    """Single slice latents with their normalised position p = z / (Z - 1), for the informed-slice model."""

    def __init__(self, cache: dict):
        self.scale = float(cache["scale"])
        self.items = [
            (c["latent"], z, c["latent"].shape[0]) for c in cache["cases"] for z in range(c["latent"].shape[0])
        ]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        lat, z, total = self.items[i]
        return {
            "image": lat[z].float() * self.scale,
            "position": torch.tensor(z / max(total - 1, 1), dtype=torch.float32),
        }
