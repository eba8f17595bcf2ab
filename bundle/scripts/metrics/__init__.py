"""Metrics of synthetic volumes: FID per plane, fidelity, diversity and privacy."""

from . import features, fidelity, fid  # noqa: F401
