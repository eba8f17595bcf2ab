"""Pretext tasks for pretraining a segmentation backbone on unlabelled volumes (``pretrain_segmenter.json``).

- ``DiffusionNoise``: the denoising diffusion pretext: a DDPM forward step q(x_t | x_0) at a uniformly drawn
  timestep; the backbone predicts x_0. MONAI's SegResNet takes no timestep, so the task is noise-level blind (the
  level is read from the input, as in blind denoisers); the encoder stays exactly the segmenter's.
- ``RestorativeCorruption``: the Models-Genesis-style restorative baseline (non-linear intensity curve, local voxel
  shuffling, in-/out-painting); the backbone restores x_0, no timestep, no noise schedule.
- ``PretextLoss``: MSE of the restored volume plus, with anatomical guidance, L1 of the predicted template coordinates
  inside the anatomy (output channels: [x0] + [x, y, z] when guided).
Written here because MONAI ships neither pretext task; the noise schedule is MONAI's DDPMScheduler.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.schedulers import DDPMScheduler
from torch import nn


class DiffusionNoise:
    """x_0 in [0, 1] -> x_t, noised in [-1, 1] (the range the DDPM schedule is made for) and mapped back, so that
    t = 0 gives the clean image the segmenter will see."""

    def __init__(self, num_train_timesteps: int = 1000, schedule: str = "linear_beta"):
        self.scheduler = DDPMScheduler(num_train_timesteps=num_train_timesteps, schedule=schedule)

    def __call__(self, x0: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        t = torch.tensor([int(rng.integers(0, self.scheduler.num_train_timesteps))])
        noise = torch.from_numpy(rng.standard_normal(x0.shape).astype(np.float32))
        noisy = self.scheduler.add_noise(original_samples=x0[None] * 2 - 1, noise=noise[None], timesteps=t)[0]
        return (noisy + 1) / 2


class RestorativeCorruption:
    """Models Genesis (Zhou et al. 2019) transformations of a (1, X, Y, Z) patch, each with its probability."""

    def __init__(self, p_curve=0.9, p_shuffle=0.5, p_paint=0.9, p_inpaint=0.8, shuffle_blocks=200):
        self.p_curve, self.p_shuffle, self.p_paint, self.p_inpaint = p_curve, p_shuffle, p_paint, p_inpaint
        self.shuffle_blocks = int(shuffle_blocks)

    def __call__(self, x0: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        x = x0[0].numpy().copy()
        if rng.random() < self.p_curve:
            x = self._curve(x, rng)
        if rng.random() < self.p_shuffle:
            x = self._shuffle(x, rng)
        if rng.random() < self.p_paint:
            x = self._inpaint(x, rng) if rng.random() < self.p_inpaint else self._outpaint(x, rng)
        return torch.from_numpy(x)[None]

    @staticmethod
    def _curve(x: np.ndarray, rng) -> np.ndarray:
        """Monotone cubic Bezier intensity curve through (0, 0) and (1, 1) (flipped half the time)."""
        p1, p2 = rng.random(2), rng.random(2)
        s = np.linspace(0, 1, 1000)
        bx = 3 * (1 - s) ** 2 * s * p1[0] + 3 * (1 - s) * s**2 * p2[0] + s**3
        by = 3 * (1 - s) ** 2 * s * p1[1] + 3 * (1 - s) * s**2 * p2[1] + s**3
        if rng.random() < 0.5:
            by = by[::-1]
        order = np.argsort(bx)
        scale = max(float(x.max()), 1e-6)
        return (np.interp(x / scale, bx[order], by[order]) * scale).astype(np.float32)

    def _shuffle(self, x: np.ndarray, rng) -> np.ndarray:
        out = x.copy()
        for _ in range(self.shuffle_blocks):
            size = [int(rng.integers(1, max(2, s // 8) + 1)) for s in x.shape]
            at = [int(rng.integers(0, s - b + 1)) for s, b in zip(x.shape, size)]
            box = tuple(slice(a, a + b) for a, b in zip(at, size))
            block = out[box].ravel().copy()
            rng.shuffle(block)
            out[box] = block.reshape(size)
        return out

    @staticmethod
    def _random_box(shape, rng, lo: float, hi: float):
        size = [int(rng.integers(max(1, int(s * lo)), max(2, int(s * hi)) + 1)) for s in shape]
        at = [int(rng.integers(0, s - b + 1)) for s, b in zip(shape, size)]
        return tuple(slice(a, a + b) for a, b in zip(at, size))

    def _inpaint(self, x: np.ndarray, rng) -> np.ndarray:
        for _ in range(int(rng.integers(1, 6))):
            box = self._random_box(x.shape, rng, 1 / 6, 1 / 3)
            x[box] = rng.random(x[box].shape).astype(np.float32) * float(x.max())
        return x

    def _outpaint(self, x: np.ndarray, rng) -> np.ndarray:
        out = rng.random(x.shape).astype(np.float32) * float(x.max())
        box = self._random_box(x.shape, rng, 3 / 7, 4 / 7)
        out[box] = x[box]
        return out


class PretextLoss(nn.Module):
    """``pred``: (B, [1 if restore] + [3 if coordinates], ...); ``target``: (B, 5, ...) = x_0, the template
    coordinates (x, y, z in [0, 1]) and the anatomy mask (where the coordinates are supervised)."""

    def __init__(self, restore: bool = True, coordinates: bool = False, coordinate_weight: float = 1.0):
        super().__init__()
        if not (restore or coordinates):
            raise ValueError("a pretext loss needs restoration, coordinates or both")
        self.restore, self.coordinates, self.weight = bool(restore), bool(coordinates), float(coordinate_weight)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = pred.new_zeros(())
        if self.restore:
            loss = loss + torch.mean((pred[:, :1] - target[:, :1]) ** 2)
        if self.coordinates:
            inside = target[:, 4:5]
            err = torch.abs(pred[:, int(self.restore) : int(self.restore) + 3] - target[:, 1:4]) * inside
            loss = loss + self.weight * err.sum() / (3 * inside.sum()).clamp_min(1.0)
        return loss


class PretextTask:
    """What a pretext name means: the input corruption, the loss and the network's output channels."""

    NAMES = ("diffusion", "diffusion_coordinates", "restorative", "coordinates")

    def __init__(self, name: str, coordinate_weight: float = 1.0, num_train_timesteps: int = 1000):
        if name not in self.NAMES:
            raise ValueError(f"unknown pretext {name!r}; one of {self.NAMES}")
        self.name = name
        self.restore = name != "coordinates"
        self.coordinates = name in ("diffusion_coordinates", "coordinates")
        if name.startswith("diffusion"):
            self.corruption = DiffusionNoise(num_train_timesteps)
        elif name == "restorative":
            self.corruption = RestorativeCorruption()
        else:
            self.corruption = None  # the coordinate regressor sees the clean image
        self.loss = PretextLoss(self.restore, self.coordinates, coordinate_weight)
        self.out_channels = int(self.restore) + 3 * int(self.coordinates)
