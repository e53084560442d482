"""Marking a call as working (decoding, thinking, synthesising)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def busy(channel: object) -> Iterator[None]:
    """While the session works, a file channel's clock runs in real time
    (channels without a simulated clock have no ``busy``)."""
    hold = getattr(channel, "busy", None)
    if not callable(hold):
        yield
        return
    with hold():
        yield
