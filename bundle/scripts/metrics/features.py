"""2D feature extractors for FID on slices.

Offline default: the encoder of gem3d's own autoencoder, trained on the real training slices (trained by
``train_autoencoder.json`` and shipped). Features are the channel means and standard deviations of every encoder
stage's output (multi-scale texture statistics). For users online, :func:`radimagenet_resnet50` loads the
RadImageNet ResNet-50 the paper used; without network access it fails with a clear message.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import Gem3dInputError


class EncoderFeatures:
    def __init__(self, autoencoder, device="cpu", batch: int = 64):
        self.encoder = autoencoder.encoder.eval().to(device)
        self.device, self.batch = torch.device(device), batch

    @torch.inference_mode()
    def __call__(self, slices: np.ndarray) -> torch.Tensor:
        """(N, H, W) slices in [0, 1] -> (N, D) features."""
        out = []
        x_all = torch.as_tensor(np.asarray(slices, np.float32))[:, None]
        for i in range(0, len(x_all), self.batch):
            x = x_all[i : i + self.batch].to(self.device)
            feats = []
            for block in self.encoder.blocks:
                x = block(x)
                feats += [x.mean((2, 3)), x.std((2, 3))]
            out.append(torch.cat(feats, 1).float().cpu())
        return torch.cat(out)


def radimagenet_resnet50(weights_url: str = "https://huggingface.co/Warvito/radimagenet-models"):
    """The RadImageNet ResNet-50 through torch.hub (needs internet access on first use)."""
    try:
        return torch.hub.load(
            "Warvito/radimagenet-models", model="radimagenet_resnet50", verbose=False, trust_repo=True
        )
    except Exception as exc:  # offline: URLError, HTTPError, gaierror...
        raise Gem3dInputError(
            f"could not load the RadImageNet ResNet-50 ({weights_url}): {exc}. It needs internet access on first "
            "use; offline, use the default feature extractor (gem3d's trained encoder)."
        ) from exc
