"""Data: demo phantoms, datalists and validation, volume preprocessing, conditions, latent cache, windows."""

from . import (  # noqa: F401
    conditioning,
    datalist,
    demo_phantom,
    latent_cache,
    mask_augment,
    model_space,
    slices,
    volume_dataset,
    windows,
)
