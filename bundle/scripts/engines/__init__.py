"""Training pieces the configs wire into ``monai.engines`` trainers: losses, batch preparation, stages, handlers."""

from . import ema, handlers, inferers, losses, prepare, stages  # noqa: F401
