"""Reading for a screen off the UI thread: the value, or the reason it could not be read."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from console.errors import UserError

T = TypeVar("T")


def read_or_error(read: Callable[[], T]) -> tuple[T | None, str | None]:
    """`(read(), None)`, or `(None, message)` when the read fails with a `UserError`: a
    screen shows the message in place and keeps what it read last."""
    try:
        return read(), None
    except UserError as exc:
        return None, str(exc)
