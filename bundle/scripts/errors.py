"""The one error type gem3d raises for bad input, so that callers (CLI, server) can tell it from a bug."""


class Gem3dInputError(ValueError):
    """Bad user input: the message names the file or parameter and what is wrong with it."""


def number_in(value, lo: float, hi: float) -> float | None:
    """``value`` as a float when it is a number in [lo, hi], else None (NaN and infinities too); the caller words the
    error, which names its parameter."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if lo <= number <= hi else None
