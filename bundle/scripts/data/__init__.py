"""Data: demo phantoms, datalists and validation, volume preprocessing, mask augmentation, latent cache."""

from . import datalist, demo_phantom, slices, volumes  # noqa: F401
