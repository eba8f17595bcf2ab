"""Networks: the window UNet with pseudo-3D layers, the informed-slice UNet, weight loading, slice encoding."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
