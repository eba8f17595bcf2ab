"""Metrics of synthetic volumes: FID per plane, fidelity, diversity and privacy, segmentation scores."""

from . import features, fid, fidelity, segmentation  # noqa: F401
