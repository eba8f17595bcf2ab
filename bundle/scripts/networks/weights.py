"""Loading shipped or trained weights into the networks a config declares."""

from __future__ import annotations

import json
import os

import torch

from ..errors import Gem3dInputError


def load_weights(network: torch.nn.Module, weights: str, what: str, device="cpu", strict=True) -> torch.nn.Module:
    """Load ``weights`` into ``network`` (eval mode, on ``device``); a clear error naming ``what`` and the file when
    it is missing or does not fit the declared network."""
    if not os.path.isfile(weights):
        raise Gem3dInputError(f"{what} weights not found: {weights} (train them first, see bundle/docs/README.md)")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    try:
        network.load_state_dict(state, strict=strict)
    except RuntimeError as exc:
        raise Gem3dInputError(f"{what} weights {weights} do not match the network the config declares: {exc}") from exc
    return network.to(device).eval()


def named_weights_file(model_dir: str, name: str, files: dict, option: str) -> str:
    """The file in ``model_dir`` of the shipped weights called ``name`` in ``files`` (a switch such as
    ``--window_weights``, named ``option`` in the error)."""
    if name not in files:
        raise Gem3dInputError(f"{option} must be one of {sorted(files)}, not {name!r}")
    return os.path.join(model_dir, files[name])


def init_from(network: torch.nn.Module, weights: str, what: str) -> torch.nn.Module:
    """Start ``network`` from another network's ``weights`` where they fit: tensors of the same name and rank get
    the overlapping block (so a first convolution with more input channels starts from the old one's image
    channel, the new channels at zero), everything else keeps its initialisation."""
    if not os.path.isfile(weights):
        raise Gem3dInputError(f"{what}: weights to start from not found: {weights}")
    source = torch.load(weights, map_location="cpu", weights_only=True)
    state = network.state_dict()
    for name, target in state.items():
        src = source.get(name)
        if src is None or src.ndim != target.ndim:
            continue
        block = tuple(slice(0, min(a, b)) for a, b in zip(src.shape, target.shape))
        if src.shape != target.shape and target.ndim > 1:
            target.zero_()
        target[block] = src[block].to(target.dtype)
    network.load_state_dict(state)
    return network


class LazyWeights:
    """Networks whose weights load on first use (``lazy["name"]``): a job can declare every backend and load only
    the one it runs. Each entry is ``name=(network, weights file, what)``; errors name ``what`` and the file."""

    def __init__(self, device, **networks):
        self.device, self._specs, self._loaded = torch.device(device), networks, {}

    def __contains__(self, name: str) -> bool:
        return self._specs.get(name, (None,))[0] is not None

    def __getitem__(self, name: str) -> torch.nn.Module:
        if name not in self._loaded:
            network, weights, what = self._specs[name]
            if network is None:
                raise ValueError(f"this configuration declares no {what}")
            self._loaded[name] = load_weights(network, weights, what, self.device)
        return self._loaded[name]


class LatentModel:
    """What both backends' models share: lazily loaded ``networks`` (one of them the ``autoencoder``) and the latent
    scale (1 / std of the training latents), read on first use."""

    def __init__(self, device, latent_scale_file: str, **networks):
        self.device = torch.device(device)
        self.networks = LazyWeights(device, **networks)
        self._scale_file, self._scale = latent_scale_file, None

    @property
    def autoencoder(self):
        return self.networks["autoencoder"]

    @property
    def scale(self) -> float:
        if self._scale is None:
            if not os.path.isfile(self._scale_file):
                raise Gem3dInputError(f"latent scale file not found: {self._scale_file} (written by the training)")
            with open(self._scale_file) as f:
                self._scale = float(json.load(f)["scale"])
        return self._scale
