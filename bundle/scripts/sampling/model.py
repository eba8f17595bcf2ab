"""The trained GEM-3D pieces together: autoencoder, window model, optional informed-slice model, scheduler."""

from __future__ import annotations

import numpy as np
import torch

from ..data.latent_cache import read_latent_scale
from ..networks.latents import decode_latents, encode_slices
from ..networks.weights import load_weights


class Gem3dModel:
    """Loads the shipped (EMA) weights into the networks the config declares; encodes and decodes slices."""

    def __init__(
        self,
        autoencoder,
        autoencoder_file,
        window_net,
        window_file,
        scheduler,
        latent_scale_file,
        informed_net=None,
        informed_file=None,
        device="cpu",
        decode_batch: int = 32,
    ):
        self.device = torch.device(device)
        self.autoencoder = load_weights(autoencoder, autoencoder_file, "autoencoder", self.device)
        self.window_net = load_weights(window_net, window_file, "window model", self.device)
        self.scheduler = scheduler
        self.scale = read_latent_scale(latent_scale_file)
        self._informed = (informed_net, informed_file)
        self.informed_net = None
        self.decode_batch = int(decode_batch)
        self._latent_shapes: dict[int, tuple] = {}

    def informed_model(self):
        """The informed-slice model, loaded on first use (only mode 'ig' needs it)."""
        if self.informed_net is None:
            net, path = self._informed
            if net is None:
                raise ValueError("this configuration declares no informed-slice model (mode 'ig')")
            self.informed_net = load_weights(net, path, "informed-slice model", self.device)
        return self.informed_net

    def encode(self, slices: np.ndarray) -> torch.Tensor:
        """(N, S, S) images -> (N, C, h, w) scaled latents (posterior means)."""
        return encode_slices(self.autoencoder, slices, self.device, self.decode_batch) * self.scale

    def latent_shape(self, size: int) -> tuple:
        """(C, h, w) of the latent of a size x size slice (from the autoencoder itself, cached per size)."""
        if size not in self._latent_shapes:
            self._latent_shapes[size] = tuple(self.encode(np.zeros((1, size, size), np.float32)).shape[1:])
        return self._latent_shapes[size]

    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """(Z, C, h, w) scaled latents -> (S, S, Z) image."""
        return decode_latents(self.autoencoder, latents / self.scale, self.device, self.decode_batch)
