"""Sampling: the window plan, the propagation sampler, informed-slice sources and the synthesis job."""

from . import informed, model, sampler, synthesize, window_plan  # noqa: F401
