"""Diffusion UNets conditioned on a vector through the time embedding: the informed-slice model (a slice's
normalised position p in [0, 1]) and the joint model (a tumour vector).

MONAI's ``DiffusionModelUNet`` adds ``class_embedding(class_labels)`` to the time embedding; its class embedding is a
lookup table for integer classes, so it is replaced here by a continuous embedding of the vector (the slice-based
LDM's choice for its tumour vector: an MLP added to the time embedding). ``DiffusionInferer`` passes conditions as
``context``, so ``context`` carries the vector.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn

from ..data.tumour_attributes import ATTRIBUTES, CENTRE, EXTENT


class PositionEmbedding(nn.Module):
    def __init__(self, base_dim: int, out_dim: int):
        super().__init__()
        self.base_dim = base_dim
        self.mlp = nn.Sequential(nn.Linear(base_dim, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        # Scale [0, 1] to the timestep range the sinusoidal embedding is tuned for.
        return self.mlp(get_timestep_embedding(p[:, 0].float() * 1000.0, self.base_dim))


class VectorEmbedding(nn.Module):
    """An MLP from the condition vector to the time-embedding width."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, out_dim))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.mlp(v.float())


class VectorConditionedUNet(nn.Module):
    """A ``DiffusionModelUNet`` (built with ``num_class_embeds=1``) whose class embedding is ``embedding``."""

    what = "a condition vector"

    def __init__(self, unet: nn.Module, embedding: nn.Module):
        super().__init__()
        if getattr(unet, "num_class_embeds", None) is None:
            raise ValueError(f"{type(self).__name__} needs a DiffusionModelUNet built with num_class_embeds=1")
        unet.class_embedding = embedding
        self.unet = unet

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError(f"{type(self).__name__} needs {self.what} as context")
        t = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps
        return self.unet(x, t, class_labels=context.reshape(x.shape[0], -1))


class PositionUNet(VectorConditionedUNet):
    """The informed-slice model: conditioned on the slice position p (sinusoidal embedding + MLP)."""

    what = "the slice position p"

    def __init__(self, unet: nn.Module):
        base = unet.block_out_channels[0]
        super().__init__(unet, PositionEmbedding(base, base * 4))


class AttributeUNet(VectorConditionedUNet):
    """The joint model's stacked-slice UNet: conditioned on the encoded tumour vector (``width`` entries) through an
    MLP ``width`` -> ``hidden`` -> time-embedding width."""

    what = "the encoded tumour vector"

    def __init__(self, unet: nn.Module, width: int, hidden: int = 256):
        super().__init__(unet, VectorEmbedding(int(width), int(hidden), unet.block_out_channels[0] * 4))


class SpatialAttributeUNet(AttributeUNet):
    """The joint model's UNet with the tumour's place drawn as well as embedded: one more input channel holds a
    Gaussian blob at the requested centre with the requested extent (its standard deviation half the extent per
    axis), rendered from the encoded vector itself, so the trainer, the sampler and classifier-free guidance stay as
    they are (a dropped or healthy vector draws no blob). The time embedding alone placed tumours 18% of the brain
    away from the request (median, BENCHMARKS); a convolution reads a drawn position directly.

    Centre and extent are relative to the anatomy's bounding box (``tumour_attributes``), which is not known before
    the anatomy is generated: the blob is placed in the training set's mean anatomy box (``anatomy_box``, fractions
    of the field of view). The de-standardisation and that box are buffers, so the weights file carries them.
    """

    def __init__(self, unet: nn.Module, width: int, hidden: int = 256, table=None, anatomy_box=None):
        super().__init__(unet, width, hidden)
        centre = [ATTRIBUTES.index(k) for k in CENTRE]
        extent = [ATTRIBUTES.index(k) for k in EXTENT]
        self.index = centre + extent
        self.register_buffer("place_mean", torch.zeros(6))
        self.register_buffer("place_std", torch.ones(6))
        self.register_buffer("box", torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
        if table is not None:
            self.place_mean.copy_(torch.as_tensor(np.asarray(table.mean)[self.index], dtype=torch.float32))
            self.place_std.copy_(torch.as_tensor(np.asarray(table.std)[self.index], dtype=torch.float32))
        if anatomy_box is not None:
            self.box.copy_(torch.as_tensor(anatomy_box, dtype=torch.float32).reshape(2, 3))

    def prior(self, context: torch.Tensor, shape) -> torch.Tensor:
        """(B, 1, *shape) blob for the encoded vectors ``context`` (B, width)."""
        v = context.reshape(context.shape[0], -1).float()
        drawn = (v[:, -1] * (1.0 - v[:, -2])).clamp(0, 1)  # attributes given, not healthy
        place = v[:, self.index] * self.place_std + self.place_mean
        span = self.box[1] - self.box[0]
        centre = self.box[0] + place[:, :3].clamp(0, 1) * span  # fraction of the field of view
        sigma = place[:, 3:].clamp(0.02, 1) * span / 2
        blob = torch.ones((v.shape[0], *shape), device=v.device)
        for axis, n in enumerate(shape):
            pos = (torch.arange(n, device=v.device, dtype=torch.float32) + 0.5) / n
            d = (pos[None] - centre[:, axis : axis + 1]) / (sigma[:, axis : axis + 1] + 0.5 / n)
            g = torch.exp(-0.5 * d**2)
            view = [v.shape[0]] + [1] * len(shape)
            view[axis + 1] = n
            blob = blob * g.reshape(view)
        return (blob * drawn.reshape(-1, *[1] * len(shape)))[:, None]

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError(f"{type(self).__name__} needs {self.what} as context")
        prior = self.prior(context, x.shape[2:]).to(x.dtype)
        return super().forward(torch.cat([x, prior], dim=1), timesteps, context)
