"""Metrics of synthetic volumes: FID per plane, consistency, fidelity, diversity and privacy, segmentation scores."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
