from .synthesis import SynthesisTask  # noqa: F401
