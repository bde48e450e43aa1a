"""Messages about user content stay short: they end in reports, conditions and Events, which have size limits,
and they may quote what the user wrote, which may be huge."""

from __future__ import annotations

MAX_MESSAGE = 1024
"""Characters of one validation message, ellipsis included."""
MAX_QUOTED = 128
"""Characters of one user value quoted in a message."""
ELLIPSIS = "…"


def capped(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message``, cut to ``limit`` characters with an ellipsis when longer."""
    return message if len(message) <= limit else message[: limit - len(ELLIPSIS)] + ELLIPSIS


def quoted(value: object, limit: int = MAX_QUOTED) -> str:
    """A user value in quotes, as ``repr`` gives a string, cut to ``limit`` characters with an ellipsis."""
    return repr(capped(str(value), limit))
