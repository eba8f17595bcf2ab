"""The trained pieces of the 3D backend (MedLoRD-style): 3D autoencoder, latent UNet, ControlNet, latent scale.

Weights are loaded on first use, so the main job and the app can declare this backend beside GEM-3D at no cost
until a request picks it. Decoding runs by overlapping latent patches (MONAI ``SlidingWindowInferer``, Gaussian
blending), so its memory is bounded by the patch, not the volume.
"""

from __future__ import annotations

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from ..networks.controlled_unet import ControlledUNet
from ..networks.weights import LatentModel, named_weights_file

# the ControlNet's shipped weights: as trained on the masks, and reward fine-tuned (finetune_reward_medlord.json)
CONTROLNET_WEIGHTS = {"default": "medlord_controlnet.pt", "reward": "medlord_controlnet_reward.pt"}


def controlnet_weights_file(model_dir: str, name: str) -> str:
    """The file of the 3D backend's ControlNet weights called ``name`` (``--medlord_weights``)."""
    return named_weights_file(model_dir, name, CONTROLNET_WEIGHTS, "medlord_weights")


class VolumeModel(LatentModel):
    def __init__(
        self,
        autoencoder,
        autoencoder_file: str,
        unet,
        unet_file: str,
        controlnet,
        controlnet_file: str,
        scheduler,
        latent_scale_file: str,
        device="cpu",
        multiple: int = 16,
        decode_patch=(32, 32, 32),
        decode_overlap: float = 0.25,
    ):
        super().__init__(
            device,
            latent_scale_file,
            autoencoder=(autoencoder, autoencoder_file, "3D autoencoder"),
            unet=(unet, unet_file, "3D latent UNet"),
            controlnet=(controlnet, controlnet_file, "ControlNet"),
        )
        self.scheduler = scheduler
        self.multiple = int(multiple)  # model-space sizes must divide by it (autoencoder x UNet downsampling)
        self.decode_patch, self.decode_overlap = tuple(int(p) for p in decode_patch), float(decode_overlap)
        self._denoiser = None

    @property
    def denoiser(self) -> ControlledUNet:
        if self._denoiser is None:
            unet, controlnet = self.networks["unet"], self.networks["controlnet"]
            self._denoiser = ControlledUNet(unet, controlnet, copy_encoder=False).eval()
        return self._denoiser

    @torch.inference_mode()
    def latent_shape(self, shape) -> tuple:
        """(C, x, y, z) of the latent of an image of spatial ``shape`` (from the autoencoder itself)."""
        probe = self.autoencoder.encode(torch.zeros((1, 1, *[self.multiple] * 3), device=self.device))[0]
        factor = self.multiple // probe.shape[-1]
        return (probe.shape[1], *[int(s) // factor for s in shape])

    def decode(self, latent: torch.Tensor) -> np.ndarray:
        """(C, x, y, z) scaled latent -> (X, Y, Z) image, decoded patch by patch."""
        with torch.inference_mode():
            return self.decode_tensor(latent).float().cpu().numpy()

    def decode_tensor(self, latent: torch.Tensor) -> torch.Tensor:
        """``decode`` as an (X, Y, Z) tensor on the model's device, differentiable in the latent (outside inference
        mode): the path reward backpropagation takes from the ControlNet to the critics."""
        z = (latent[None].float() / self.scale).to(self.device)
        # a patch never larger than the latent: MONAI would pad the latent up to the patch and decode the padding
        roi = tuple(min(p, s) for p, s in zip(self.decode_patch, z.shape[2:]))
        inferer = SlidingWindowInferer(
            roi, sw_batch_size=1, overlap=self.decode_overlap, mode="gaussian", progress=False
        )
        return inferer(z, self.autoencoder.decode)[0, 0]
