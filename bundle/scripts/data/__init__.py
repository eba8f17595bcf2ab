"""Data: demo phantoms, datalists and validation, volume preprocessing, conditions, latent cache, windows."""

from . import (  # noqa: F401
    conditioning,
    ct_phantom,
    datalist,
    demo_phantom,
    label_set,
    latent_cache,
    mask_augment,
    model_space,
    phantom_dataset,
    slices,
    volume_dataset,
    windows,
)
