"""Judging a pause with the real dialogue model: whether the words are a whole
request, and the reply prepared ahead without touching the call's state."""

from __future__ import annotations

import asyncio

from bot.call import CallEngine
from bot.session.contracts import VoiceSettings
from bot.session.responder import Responder


class RenderLog:
    """Records what was rendered ahead, then renders it with the real synthesiser."""

    def __init__(self, synthesiser: object) -> None:
        self.prepared: list[str] = []
        self._synthesiser = synthesiser

    def prepare(self, text: str) -> None:
        self.prepared.append(text)
        self._synthesiser.prepare(text)  # type: ignore[attr-defined]


def test_a_whole_request_is_judged_complete_and_its_reply_rendered_ahead(
    call_engine: CallEngine, isolated_settings: object
) -> None:
    from bot.speech.tts import Synthesiser, TtsSettings

    async def run() -> tuple[list[bool], list[str], int, int, dict[str, object]]:
        call = call_engine.new_call([], "file")
        dialogue = call_engine.dialogue_of(call)
        responder = Responder(call_engine, call, VoiceSettings())
        with Synthesiser(TtsSettings()) as synthesiser:
            speaker = RenderLog(synthesiser)
            before = len((await dialogue._tracker(call.call_id)).events)
            verdicts = [
                await responder.judge("thank you very much", speaker),
                await responder.judge("i want to", speaker),
                await responder.judge("where is my order", speaker),
            ]
            after = len((await dialogue._tracker(call.call_id)).events)
            # The prepared reply lands in the synthesiser's memory cache (it
            # renders on its own thread; the caller never waited for it).
            key = synthesiser._cache_key(" ".join(speaker.prepared[0].split()))
            for _ in range(200):
                if (cached := synthesiser._memory_get(key)) is not None:
                    break
                await asyncio.sleep(0.05)
            slots = await dialogue.slots(call.call_id)
        call_engine.end_call(call, "caller_hang_up")
        return verdicts, speaker.prepared, before, after, {"cached": cached, **slots}

    verdicts, prepared, before, after, extra = asyncio.run(run())
    assert verdicts == [True, False, True]
    # Thanks get a plain response, known ahead; an order question starts the
    # order form, an action whose words are not known until it runs.
    assert prepared == ["You're welcome. Is there anything else I can help you with?"]
    assert extra["cached"]
    # Nothing was said to the dialogue: no events, no slot set.
    assert before == after
    assert extra.get("task") is None
