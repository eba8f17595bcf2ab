"""Data: demo and CT phantoms, datalists and label sets, model space, mask augmentation, latent cache, windows."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
