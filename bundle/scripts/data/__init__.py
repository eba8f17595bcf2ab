"""Data: demo phantoms, datalists and validation, volume preprocessing, conditions, latent cache, windows."""

from . import conditioning, datalist, demo_phantom, latent_cache, mask_augment, slices, volumes, windows  # noqa: F401
