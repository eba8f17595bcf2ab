"""Metrics of synthetic volumes: FID per plane, fidelity, diversity and privacy."""

from . import features, fid, fidelity  # noqa: F401
