"""The recogniser stage: one Vosk recogniser per call, on the call's own thread.

Vosk recognisers are not thread-safe, and decoding is CPU work that must not
block the call's event loop: every call to the recogniser runs, in order, on
one worker thread per call. Grammars change only between turns (Vosk resets
on a grammar change and would lose the caller's words).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TypeVar

from bot.expectations import Expectation
from bot.session.contracts import Recognised, Recogniser

_T = TypeVar("_T")


class RecognitionStage:
    def __init__(self, recogniser: Recogniser) -> None:
        self._recogniser = recogniser
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="asr")
        self._grammar_for = Expectation.FREE
        self._partial = ""

    async def feed(self, frame: bytes) -> Recognised | None:
        """A final result when the recogniser's endpoint fired; a new partial
        text (only when it changed); else None."""
        result = await self._run(self._recogniser.accept, frame)
        if result is None:
            return None
        if result.is_final:
            self._partial = ""
            return Recognised(result.text.strip(), True, result.confidence)
        text = result.text.strip()
        if not text or text == self._partial:
            return None
        self._partial = text
        return Recognised(text, False, 0.0)

    async def final(self) -> Recognised:
        result = await self._run(self._recogniser.final)
        self._partial = ""
        return Recognised(result.text.strip(), True, result.confidence)

    async def reset(self) -> None:
        self._partial = ""
        await self._run(self._recogniser.reset)

    async def listen_for(self, expectation: Expectation) -> None:
        """The grammar for the next turn (call between turns only)."""
        if expectation is self._grammar_for:
            return
        self._grammar_for = expectation
        await self._run(self._recogniser.set_grammar, expectation.grammar())

    def close(self) -> None:
        """Hands the recogniser back (a warm decoder serves the next call)."""
        close = getattr(self._recogniser, "close", None)
        if callable(close):
            self._thread.submit(close)
        self._thread.shutdown(wait=False)

    async def _run(self, fn: Callable[..., _T], *args: object) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)
