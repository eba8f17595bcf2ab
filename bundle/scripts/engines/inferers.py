"""Inferers for validation of networks whose forward is not what should be compared with the target."""

from __future__ import annotations

from monai.inferers import Inferer


class ReconstructionInferer(Inferer):
    """Validation of an autoencoder: the deterministic reconstruction (decode of the posterior mean)."""

    def __call__(self, inputs, network, *args, **kwargs):
        return network.reconstruct(inputs)
