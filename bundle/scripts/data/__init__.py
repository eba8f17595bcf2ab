"""Data: demo phantoms, datalists and validation, volume preprocessing, conditions, latent cache, windows."""

from . import (  # noqa: F401
    conditioning,
    datalist,
    demo_phantom,
    latent_cache,
    mask_augment,
    slices,
    volume_dataset,
    model_space,
    windows,
)
