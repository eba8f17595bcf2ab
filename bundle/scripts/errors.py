"""The one error type gem3d raises for bad input, so that callers (CLI, server) can tell it from a bug."""


class Gem3dInputError(ValueError):
    """Bad user input: the message names the file or parameter and what is wrong with it."""
