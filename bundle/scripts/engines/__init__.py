"""Training pieces the configs wire into ``monai.engines`` trainers: losses, batch preparation, freezing, handlers."""

from . import handlers, inferers, losses  # noqa: F401
