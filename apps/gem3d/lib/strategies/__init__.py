from .synthetic import NextSynthetic  # noqa: F401
