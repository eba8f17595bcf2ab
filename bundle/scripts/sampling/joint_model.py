"""The joint image + mask model (slice-based LDM with tumour attributes): its trained pieces and its sampler.

A whole volume is one latent stack (C, x, y, Z): every axial slice's joint latent, stacked along depth and denoised
at once by the 3D UNet under the encoded tumour vector, then decoded slice by slice into the image and the mask
(argmax of the mask logits).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.tumour_attributes import AttributeTable
from ..networks.latents import decode_slices
from ..networks.weights import LatentModel
from .sampler import denoise


class GuidedUNet(nn.Module):
    """Classifier-free guidance around a vector-conditioned UNet: pred = u + g (c - u), with u the prediction for
    the all-zero ("no attributes") vector the training drops to; g = 1 is plain conditional sampling."""

    def __init__(self, unet: nn.Module, vector: torch.Tensor, guidance: float):
        super().__init__()
        self.unet, self.vector, self.guidance = unet, vector, float(guidance)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        cond = self.vector.to(x.device).expand(x.shape[0], -1)
        if self.guidance == 1.0:
            return self.unet(x, t, cond)
        both = self.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, torch.zeros_like(cond)]))
        c, u = both.chunk(2)
        return u + self.guidance * (c - u)


class JointModel(LatentModel):
    def __init__(
        self,
        autoencoder,
        autoencoder_file: str,
        unet,
        unet_file: str,
        scheduler,
        latent_scale_file: str,
        attribute_file: str,
        device="cpu",
        image_channels: int = 1,
    ):
        super().__init__(
            device,
            latent_scale_file,
            autoencoder=(autoencoder, autoencoder_file, "joint autoencoder"),
            unet=(unet, unet_file, "joint stacked-slice UNet"),
        )
        self.scheduler, self.attribute_file, self.image_channels = scheduler, attribute_file, int(image_channels)
        self._table = None

    @property
    def table(self) -> AttributeTable:
        if self._table is None:
            self._table = AttributeTable.read(self.attribute_file)
        return self._table

    @torch.inference_mode()
    def latent_shape(self, size: int, depth: int) -> tuple:
        """(C, x, y, Z) of the stack of ``depth`` slices of ``size`` x ``size``."""
        in_channels = self.autoencoder.encoder.in_channels
        probe = self.autoencoder.encode(torch.zeros((1, in_channels, size, size), device=self.device))[0]
        return (probe.shape[1], probe.shape[2], probe.shape[3], int(depth))

    def sample(
        self, vector: np.ndarray, shape, generator, steps: int, eta: float, guidance: float, precision, progress
    ):
        """A (C, x, y, Z) scaled latent stack for an encoded tumour ``vector``."""
        unet = self.networks["unet"]
        net = GuidedUNet(unet, torch.as_tensor(vector, dtype=torch.float32)[None], guidance)
        x = torch.randn((1, *shape), generator=generator)
        return denoise(net, self.scheduler, x, steps, eta, generator, precision=precision, progress=progress)[0]

    def decode(self, latent: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """(C, x, y, Z) scaled latent stack -> (X, Y, Z) image and (X, Y, Z) label map."""
        slices = (latent.float() / self.scale).permute(3, 0, 1, 2)  # (Z, C, x, y)
        out = decode_slices(self.autoencoder, slices, self.device, batch=32)  # (Z, 1 + L, X, Y)
        c = self.image_channels
        image = np.moveaxis(out[:, 0], 0, 2)
        label = np.moveaxis(out[:, c:].argmax(1), 0, 2).astype(np.uint8)
        return np.ascontiguousarray(image), np.ascontiguousarray(label)
