"""gem3d: GEM-3D generative enhancement of 3D medical images, as a MONAI bundle.

Subpackages: ``data`` (demo phantoms, datalists, intensity normalisation, mask augmentation, latent cache),
``networks`` (autoencoder, window UNet with pseudo-3D layers, position-conditioned slice UNet), ``engines``
(batch preparation, freezing, losses), ``sampling`` (window plan, propagation sampler, informed slices, the
synthesis job) and ``metrics``. ``io`` writes NIfTI atomically with geometry; ``preview`` draws tri-planar PNGs.
"""

import importlib
import os

BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lazy_submodules(package: str):
    """A module ``__getattr__`` that imports ``<package>.<name>`` on first use.

    Configs say ``$import scripts`` once and then use ``scripts.<sub>.<module>``; with this, that import costs
    nothing and runs no submodule's import-time code until a config (or the app) asks for it."""

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


__getattr__ = lazy_submodules(__name__)
