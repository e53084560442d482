from __future__ import annotations

from pathlib import Path

from bot.events import BotTurn, CallEnded, CallStarted, Escalated, TranscriptFinal
from bot.store import CallStore


def test_events_become_a_call_with_its_turns(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        for event in (
            CallStarted("c1", 0, "voice"),
            TranscriptFinal("c1", 1500, "where is my order", 0.82),
            BotTurn(
                "c1", 1700, user="where is my order", intent="order_status", confidence=0.97,
                bot=("What's your order number?",), timings={"dialogue_ms": 55.0},
            ),
            TranscriptFinal("c1", 4000, "one two three four five", 0.9),
            BotTurn("c1", 4200, user="one two three four five", intent="inform",
                    entities={"order_id": "12345"}, bot=("It has shipped.",)),
            Escalated("c1", 5000, "explicit_request"),
            CallEnded("c1", 6000, "caller_hang_up", "/rec/c1.wav"),
        ):  # fmt: skip
            store.listener(event)
        store.flush()
        call = store.call("c1")
        assert call is not None
        assert call["channel"] == "voice"
        assert call["end_reason"] == "caller_hang_up"
        assert call["duration_ms"] == 6000
        assert call["escalation_reason"] == "explicit_request"
        assert call["recording_path"] == "/rec/c1.wav"
        rows = store.turns("c1")
        assert [r["turn_index"] for r in rows] == [0, 1]
        assert rows[0]["transcript"] == "where is my order"
        assert rows[0]["asr_confidence"] == 0.82
        assert rows[0]["intent"] == "order_status"
        assert rows[0]["bot_text"] == ["What's your order number?"]
        assert rows[0]["timings"] == {"dialogue_ms": 55.0}
        assert rows[1]["entities"] == {"order_id": "12345"}
    finally:
        store.close()


def test_the_store_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'calls.sqlite3'}"
    first = CallStore(url)
    first.listener(CallStarted("c2", 0))
    first.close()
    second = CallStore(url)
    try:
        assert second.call("c2") is not None
        assert [c["call_id"] for c in second.recent_calls()] == ["c2"]
    finally:
        second.close()


def test_transcripts_are_redacted_when_the_call_ends(tmp_path: Path) -> None:
    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        store.listener(CallStarted("c3", 0))
        said = "my email is jane dot doe at example dot com about order one two three four five"
        store.listener(TranscriptFinal("c3", 100, said, 0.9))
        store.listener(BotTurn("c3", 200, user=said, intent="inform", bot=("Thanks.",)))
        store.flush()
        assert store.turns("c3")[0]["transcript"] == said  # live: the agent may need it
        store.listener(CallEnded("c3", 300, "caller_hang_up"))
        store.flush()
        kept = store.turns("c3")[0]["transcript"]
        assert kept == "my email is [email] about order one two three four five"
    finally:
        store.close()
