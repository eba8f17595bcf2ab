"""gem3d: GEM-3D generative enhancement of 3D medical images, as a MONAI bundle.

Subpackages: ``data`` (demo phantoms, datalists, intensity normalisation, mask augmentation, latent cache),
``networks`` (autoencoder, window UNet with pseudo-3D layers, position-conditioned slice UNet), ``engines``
(batch preparation, freezing, losses), ``sampling`` (window plan, propagation sampler, informed slices, the
synthesis job) and ``metrics``. ``io`` writes NIfTI atomically with geometry; ``preview`` draws tri-planar PNGs.
"""

import os

BUNDLE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Configs say ``$import scripts`` once and then use ``scripts.<sub>.<module>``: import the subpackages here.
from . import (  # noqa: E402,F401
    benchmark,
    data,
    downstream,
    engines,
    evaluate,
    io,
    metrics,
    networks,
    precision,
    preview,
    sampling,
)
