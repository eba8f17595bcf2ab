"""Networks: the window UNet with pseudo-3D layers and the position-conditioned informed-slice UNet."""

from . import position_unet, pseudo3d, window_unet  # noqa: F401
