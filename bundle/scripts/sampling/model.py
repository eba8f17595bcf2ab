"""The trained GEM-3D pieces together: autoencoder, window model, optional informed-slice model, scheduler."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import Gem3dInputError
from ..networks.latents import decode_batches, encode_slices
from ..networks.weights import LatentModel, named_weights_file

# the 2D decoder slice by slice; the decoder with cross-slice layers (networks/volume_decoder.py)
DECODERS = ("slice", "volume")
# the window model's shipped weights: volumetric tuning (stage 2), and stage 2 reward fine-tuned for an informed slice
# of the patient's own scan ("reward") or of another patient's ("reward_ic"): each helps where it was tuned, hurts the
# other (BENCHMARKS "Feature matching")
WINDOW_WEIGHTS = {"stage2": "volume.pt", "reward": "volume_reward.pt", "reward_ic": "volume_reward_ic.pt"}


def window_weights_file(model_dir: str, name: str) -> str:
    """The file of the window weights called ``name`` (``--window_weights``)."""
    return named_weights_file(model_dir, name, WINDOW_WEIGHTS, "window_weights")


class Gem3dModel(LatentModel):
    """The shipped (EMA) weights in the networks the config declares, loaded on first use; slice coding."""

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
        volume_decoder=None,
        volume_decoder_file=None,
        device="cpu",
        decode_batch: int = 32,
    ):
        super().__init__(
            device,
            latent_scale_file,
            autoencoder=(autoencoder, autoencoder_file, "autoencoder"),
            window_net=(window_net, window_file, "window model"),
            informed_net=(informed_net, informed_file, "informed-slice model (mode 'ig')"),
            volume_decoder=(volume_decoder, volume_decoder_file, "decoder with cross-slice layers (decoder 'volume')"),
        )
        self.scheduler = scheduler
        self.decode_batch = int(decode_batch)
        self._latent_shapes: dict[int, tuple] = {}

    @property
    def window_net(self):
        return self.networks["window_net"]

    def informed_model(self):
        """The informed-slice model (only mode 'ig' needs it)."""
        return self.networks["informed_net"]

    def encode(self, slices: np.ndarray) -> torch.Tensor:
        """(N, S, S) images -> (N, C, h, w) scaled latents (posterior means)."""
        return encode_slices(self.autoencoder, slices, self.device, self.decode_batch) * self.scale

    def latent_shape(self, size: int) -> tuple:
        """(C, h, w) of the latent of a size x size slice (from the autoencoder itself, cached per size)."""
        if size not in self._latent_shapes:
            self._latent_shapes[size] = tuple(self.encode(np.zeros((1, size, size), np.float32)).shape[1:])
        return self._latent_shapes[size]

    def decode(self, latents: torch.Tensor, decoder: str = "slice") -> np.ndarray:
        """(Z, C, h, w) scaled latents of one volume -> (S, S, Z) image: each slice on its own (``decoder`` "slice"),
        or all slices together through the cross-slice layers ("volume"; memory grows with Z)."""
        with torch.inference_mode():
            return np.ascontiguousarray(self.decode_tensor(latents, decoder).float().cpu().numpy())

    def decode_tensor(self, latents: torch.Tensor, decoder: str = "slice") -> torch.Tensor:
        """``decode`` as an (S, S, Z) tensor on the model's device, differentiable in the latents (outside
        inference mode): the path reward backpropagation takes from the window model to the critics."""
        if decoder not in DECODERS:
            raise Gem3dInputError(f"decoder must be {' or '.join(map(repr, DECODERS))}, not {decoder!r}")
        z = (latents / self.scale).to(self.device)
        if decoder == "volume":
            slices = self.networks["volume_decoder"].decode(z[None])[0]
        else:
            slices = decode_batches(self.autoencoder, z, self.device, self.decode_batch)
        return slices[:, 0].movedim(0, 2)
