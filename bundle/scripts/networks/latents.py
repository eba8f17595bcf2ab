"""Slices (in bounded batches: memory grows with the batch, not the volume) and 3D volumes to latents and back."""

from __future__ import annotations

import numpy as np
import torch


@torch.inference_mode()
def encode_slices(autoencoder, slices: np.ndarray, device, batch: int) -> torch.Tensor:
    """(N, S, S) images (or (N, K, S, S): several input channels) -> (N, C, h, w) posterior-mean latents (unscaled,
    on the CPU)."""
    x = torch.as_tensor(np.asarray(slices, dtype=np.float32))
    x = x[:, None] if x.ndim == 3 else x
    return torch.cat([autoencoder.encode(x[i : i + batch].to(device))[0].cpu() for i in range(0, len(x), batch)])


@torch.inference_mode()
def encode_volume(autoencoder, volume: np.ndarray, device) -> torch.Tensor:
    """(X, Y, Z) image -> (C, x, y, z) posterior-mean latent of a 3D autoencoder (unscaled, on the CPU)."""
    x = torch.as_tensor(np.asarray(volume, np.float32))[None, None].to(device)
    return autoencoder.encode(x)[0][0].cpu()


def decode_batches(autoencoder, latents: torch.Tensor, device, batch: int) -> torch.Tensor:
    """(N, C, h, w) unscaled latents -> (N, K, S, S) on ``device``, in bounded batches; differentiable in the
    latents (reward backpropagation decodes through it)."""
    return torch.cat([autoencoder.decode(latents[i : i + batch].to(device)) for i in range(0, latents.shape[0], batch)])


@torch.inference_mode()
def decode_slices(autoencoder, latents: torch.Tensor, device, batch: int) -> np.ndarray:
    """(N, C, h, w) unscaled latents -> (N, K, S, S): every output channel of every slice."""
    return decode_batches(autoencoder, latents, device, batch).float().cpu().numpy()
