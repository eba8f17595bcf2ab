"""Diffusion UNets conditioned on a vector through the time embedding: the informed-slice model (a slice's
normalised position p in [0, 1]) and the joint model (a tumour vector).

MONAI's ``DiffusionModelUNet`` adds ``class_embedding(class_labels)`` to the time embedding; its class embedding is a
lookup table for integer classes, so it is replaced here by a continuous embedding of the vector (the slice-based
LDM's choice for its tumour vector: an MLP added to the time embedding). ``DiffusionInferer`` passes conditions as
``context``, so ``context`` carries the vector.
"""

from __future__ import annotations

import torch
from monai.networks.nets.diffusion_model_unet import get_timestep_embedding
from torch import nn


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
