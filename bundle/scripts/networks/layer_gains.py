"""One output gain per pseudo-3D layer: a low-dimensional policy for reward fine-tuning.

A policy gradient estimated from a few dozen rollouts is mostly noise when it is spread over the millions of
pseudo-3D weights (the second PPO run drifted 8% in norm on it). One scalar per pseudo-3D layer that scales the
layer's residual output spans a policy of a few dozen dimensions, where the same rollouts carry more signal per
dimension, and it can only re-weigh what volumetric tuning learnt, not unlearn it. At gain 1 the network is exactly
stage 2. (Measured in BENCHMARKS "Fourth run": a consistent but small step; along the gains the fixed critics can be
gamed.)

Every layer's output ends in a linear map (the 1D convolution, the attention's output projection), so a gain folds
into that map's weight and bias exactly: written weights keep stage 2's keys and load wherever stage 2 loads.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from .pseudo3d import TemporalAttention, TemporalConv


def _temporal_layers(model: nn.Module) -> tuple[nn.ModuleDict | None, str]:
    """The pseudo-3D layers of a (possibly DDP-wrapped) window model, None without them, and the key prefix."""
    net = model.module if hasattr(model, "module") else model
    return getattr(net, "temporal", None), "module." if net is not model else ""


def _output_map(layer: nn.Module) -> str:
    if isinstance(layer, TemporalConv):
        return "conv"
    if isinstance(layer, TemporalAttention):
        return "attn.out_proj"
    raise TypeError(f"no output map known for {type(layer).__name__}")


def _scale_output(layer: nn.Module, _inputs, output: torch.Tensor) -> torch.Tensor:
    return output * layer.gain


def attach_gains(model: nn.Module) -> list[nn.Parameter]:
    """Freeze every weight of ``model`` and give each pseudo-3D layer a trainable output gain (1 at the start);
    returns the gains for the optimiser. Calling it again reuses the gains already attached."""
    layers, _ = _temporal_layers(model)
    if layers is None:
        raise ValueError("layer gains need a WindowUNet built with temporal=True")
    for p in model.parameters():
        p.requires_grad_(False)
    gains = []
    for layer in layers.values():
        if not hasattr(layer, "gain"):
            ref = next(layer.parameters())
            layer.gain = nn.Parameter(torch.ones((), device=ref.device, dtype=ref.dtype))
            layer.register_forward_hook(_scale_output)
        layer.gain.requires_grad_(True)
        gains.append(layer.gain)
    return gains


def set_gains(model: nn.Module, value: float) -> list[nn.Parameter]:
    """Scale every pseudo-3D layer's output by ``value`` (0: stage 1's function, 1: stage 2's), attaching gains where
    there are none: how much volumetric tuning a reward prefers, measured without training."""
    gains = attach_gains(model)
    with torch.no_grad():
        for gain in gains:
            gain.fill_(float(value))
    return gains


@contextmanager
def gains_at(model: nn.Module, value: float):
    """Inside the block every pseudo-3D layer's output is scaled by ``value`` (``set_gains``); afterwards the gains
    hold their earlier values again (1 where there were none) and every weight trains or not as before."""
    trains = {p: p.requires_grad for p in model.parameters()}
    layers, _ = _temporal_layers(model)
    earlier = [float(layer.gain) if hasattr(layer, "gain") else 1.0 for layer in (layers or {}).values()]
    gains = set_gains(model, value)
    try:
        yield gains
    finally:
        with torch.no_grad():
            for gain, v in zip(gains, earlier):
                gain.fill_(v)
        for p in model.parameters():
            p.requires_grad_(trains.get(p, False))


def folded_state_dict(model: nn.Module) -> dict:
    """``model``'s weights (detached, on the CPU) with every layer gain multiplied into its layer's output map and
    dropped: the same function under stage 2's keys. A model without gains gives its plain state dict."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    layers, prefix = _temporal_layers(model)
    for name, layer in (layers or {}).items():
        gain = state.pop(f"{prefix}temporal.{name}.gain", None)
        if gain is None:
            continue
        for part in ("weight", "bias"):
            key = f"{prefix}temporal.{name}.{_output_map(layer)}.{part}"
            state[key] = state[key] * gain
    return state


def reward_parameters(model: nn.Module, trainable: str) -> list[nn.Parameter]:
    """What reward fine-tuning trains: ``"pseudo3d"`` (every pseudo-3D weight, stage 2's set) or ``"gains"`` (one
    output gain per pseudo-3D layer); everything else is frozen (requires_grad False)."""
    from .window_unet import freeze_spatial

    if trainable == "pseudo3d":
        return freeze_spatial(model)
    if trainable == "gains":
        return attach_gains(model)
    raise ValueError(f"reward_trainable must be 'pseudo3d' or 'gains', got {trainable!r}")
