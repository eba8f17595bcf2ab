"""Sampling: the window plan, the propagation sampler, informed-slice sources and the synthesis job."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
