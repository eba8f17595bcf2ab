"""The informed-slice model: a 2D latent diffusion UNet conditioned on the slice's normalised position p in [0, 1].

p gets a sinusoidal embedding and an MLP and is added to the time embedding. MONAI's ``DiffusionModelUNet`` adds
``class_embedding(class_labels)`` to the time embedding; its class embedding is a lookup table for integer
classes, so it is replaced here by a continuous embedding of p. ``DiffusionInferer`` passes conditions as
``context``, so ``context`` carries p.
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
        return self.mlp(get_timestep_embedding(p.reshape(-1).float() * 1000.0, self.base_dim))


class PositionUNet(nn.Module):
    def __init__(self, unet: nn.Module):
        super().__init__()
        if getattr(unet, "num_class_embeds", None) is None:
            raise ValueError("PositionUNet needs a DiffusionModelUNet built with num_class_embeds=1")
        base = unet.block_out_channels[0]
        unet.class_embedding = PositionEmbedding(base, base * 4)
        self.unet = unet

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            raise ValueError("the informed-slice model needs the slice position p as context")
        p = context.reshape(x.shape[0], -1)[:, 0]
        t = timesteps.reshape(-1).expand(x.shape[0]) if timesteps.numel() == 1 else timesteps
        return self.unet(x, t, class_labels=p)
