"""Joining a call's audio through the console, over HTTP, on SQLite and on
PostgreSQL: who may connect (the agent who took the call; supervisors to
listen in or whisper), what is refused and how, a second tab replacing the
first, the agent's hold switch.

The bot's side is played by a thread that answers offers through the queue
as the bot process does (``VoiceSignals.answer``); the SDP text it answers
with is not negotiated here: real media is in tests/e2e/test_agent_voice_browser.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest

from bot.queue.voice import VoiceSignals
from tests.integration.test_console_http import Console, console  # noqa: F401

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 10.77.0.1\r\ns=-\r\nt=0 0\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"
)


@pytest.fixture
def bot(console: Console) -> Iterator[list[int]]:  # noqa: F811
    """Answers every offer of every call, as the process holding it would."""
    signals = VoiceSignals(console.queue)
    answered: list[int] = []
    stop = threading.Event()

    def answer() -> None:
        while not stop.is_set():
            for item in {i.id for i in _claimed(console)}:
                for link in signals.pending(item):
                    if link.state == "offered":
                        signals.answer(link.id, f"answer-for-{link.id}")
                        answered.append(link.id)
            time.sleep(0.05)

    worker = threading.Thread(target=answer, daemon=True)
    worker.start()
    yield answered
    stop.set()
    worker.join(5)


def _claimed(console: Console) -> list:  # noqa: F811
    items = []
    for item_id in range(1, 20):
        item = console.queue.item(item_id)
        if item is not None and item.status == "claimed":
            items.append(item)
    return items


def _connect(client, item_id: int, role: str = "agent", sdp: str = OFFER):  # type: ignore[no-untyped-def]
    return client.post(
        f"/calls/{item_id}/voice", {"sdp": sdp, "role": role, "csrf_token": client.csrf_token()}
    )


def test_the_agent_who_took_the_call_connects(console: Console, bot: list[int]) -> None:  # noqa: F811
    item = console.waiting_call()
    ann = console.signed_in("ann")
    assert console.queue.claim(item.id, console.queue.verify_password("ann", "ann-secret").id)
    reply = _connect(ann, item.id)
    assert reply.status == 200, reply.body
    body = json.loads(reply.body)
    assert body["state"] == "answered" and body["sdp"] == f"answer-for-{body['link_id']}"
    state = json.loads(ann.get(f"/calls/{item.id}/voice/{body['link_id']}").body)
    assert state["state"] == "answered" and state["on_hold"] is False
    # The hold switch reaches the bot through the same link.
    held = ann.post(
        f"/calls/{item.id}/voice/hold", {"on_hold": "true", "csrf_token": ann.csrf_token()}
    )
    assert held.status == 200 and json.loads(held.body)["on_hold"] is True


def test_a_second_tab_replaces_the_first(console: Console, bot: list[int]) -> None:  # noqa: F811
    item = console.waiting_call()
    ann = console.signed_in("ann")
    console.queue.claim(item.id, console.queue.verify_password("ann", "ann-secret").id)
    first = json.loads(_connect(ann, item.id).body)
    second = json.loads(_connect(ann, item.id).body)
    assert first["link_id"] != second["link_id"]
    old = json.loads(ann.get(f"/calls/{item.id}/voice/{first['link_id']}").body)
    assert old["state"] == "replaced"


def test_who_may_not_connect_is_told_why(console: Console, bot: list[int]) -> None:  # noqa: F811
    item = console.waiting_call()
    ann, bob, sue = (console.signed_in(name) for name in ("ann", "bob", "sue"))
    # Nobody has taken it yet: no one to talk with.
    refused = _connect(ann, item.id)
    assert refused.status == 409 and json.loads(refused.body)["error"] == "not_live"
    console.queue.claim(item.id, console.queue.verify_password("ann", "ann-secret").id)
    other = _connect(bob, item.id)
    assert other.status == 403
    assert json.loads(other.body)["message"].startswith("This call is not with you")
    listening = _connect(ann, item.id, role="monitor")
    assert listening.status == 403 and json.loads(listening.body)["error"] == "not_supervisor"
    silent = _connect(ann, item.id, sdp="v=0\r\nm=video 9 RTP/AVP 96\r\n")
    assert silent.status == 400 and json.loads(silent.body)["error"] == "bad_offer"
    # A supervisor may listen in and whisper.
    assert _connect(sue, item.id, role="monitor").status == 200
    assert _connect(sue, item.id, role="whisper").status == 200
    # Not a form post with the session's token: refused before anything is recorded.
    forged = ann.post(f"/calls/{item.id}/voice", {"sdp": OFFER, "role": "agent"})
    assert forged.status == 403


def test_a_callback_with_no_phone_lines_says_to_call_by_hand(console: Console) -> None:  # noqa: F811
    """No bot process with phone lines takes the request within seconds: it is
    withdrawn (not an attempt) and the agent is told to dial by hand."""
    task = console.queue.enqueue(
        "call-9", "callback", "callback_requested", 1, "general", "+447700900123", HANDOFF_CB
    )
    ann = console.signed_in("ann")
    bob = console.signed_in("bob")
    console.queue.claim(task.id, console.queue.verify_password("ann", "ann-secret").id)
    other = bob.post(f"/calls/{task.id}/dial", {"csrf_token": bob.csrf_token()})
    assert other.status == 403
    started = time.monotonic()
    reply = ann.post(f"/calls/{task.id}/dial", {"csrf_token": ann.csrf_token()})
    assert reply.status == 200, reply.body
    body = json.loads(reply.body)
    assert body["state"] == "unserved" and body["attempts"] == 0
    assert body["message"].startswith("No phone lines are connected")
    assert time.monotonic() - started >= 4.5
    page = ann.get(f"/calls/{task.id}")
    assert "Call back now" in page.body and "+447700900123" in page.body


HANDOFF_CB = {"intents": [{"intent": "delivery_problem", "confidence": 0.9}]}
