"""Training pieces the configs wire into ``monai.engines`` trainers: losses, batch preparation, stages, handlers."""

from .. import lazy_submodules

__getattr__ = lazy_submodules(__name__)
