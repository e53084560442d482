"""The queue and call pages: the live waiting list, taking calls, the call
page with its handoff and live transcript, talking to the caller, resolving."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from bot.console.auth import ConsoleError, ConsoleSession
from bot.console.live import Shared, queue_stream, turn_stream
from bot.console.views import (
    DISPOSITION_CODES,
    DISPOSITIONS,
    call_view,
    duration_text,
    priority_label,
    reason_label,
)
from bot.console.web import (
    PostedByQueueUser,
    QueueUser,
    live_stream,
    parts_of,
    redirect,
    render,
)
from bot.queue import AgentQueue, QueueError, QueueItem
from bot.queue.records import WaitingEntry

router = APIRouter()

# The feed's name for the shared waiting list.
QUEUE_LIST = "queue_list"
# A shared list older than this has its waiting times brought up to date on the page.
AGE_SHOWN_SECONDS = 0.5

# Roles that may read any call's page (agents read only the calls they took).
OVERSEEING_ROLES = frozenset({"supervisor", "admin"})
# A flag's note says what the caller meant, in a sentence or two.
MAX_NOTE_CHARS = 500


@dataclass(frozen=True)
class QueueList:
    """The waiting list as every queue page shows it, built once per queue
    change and shared by all the agents' requests: the rows, and the same
    rows as the snapshot's JSON."""

    rows: list[dict[str, Any]]
    rows_json: bytes


def listed_row(entry: WaitingEntry) -> dict[str, Any]:
    """One waiting item, as the queue page and its JSON snapshot show it."""
    return {
        "id": entry.id,
        "call_id": entry.call_id,
        "position": entry.position,
        "kind": entry.kind,
        "reason": reason_label(entry.reason),
        "priority": entry.priority,
        "priority_label": priority_label(entry.priority),
        "priority_high": entry.priority > 0,
        "skill": entry.skill,
        "waited_seconds": round(entry.waiting_seconds, 1),
        "waited_text": duration_text(entry.waiting_seconds),
        "summary": entry.summary,
        "caller_number": entry.caller_number or "",
    }


def _build_queue_list(queue: AgentQueue) -> QueueList:
    rows = [listed_row(entry) for entry in queue.waiting_list()]
    rows_json = json.dumps(rows, separators=(",", ":"), ensure_ascii=False).encode()
    return QueueList(rows, rows_json)


def _queue_list(request: Request) -> Shared[QueueList]:
    parts = parts_of(request)
    return parts.feed.shared(QUEUE_LIST, lambda: _build_queue_list(parts.queue))


@router.get("/queue", response_class=HTMLResponse)
def queue_page(request: Request, session: QueueUser) -> Response:
    shared = _queue_list(request)
    rows = shared.value.rows
    if shared.age_seconds >= AGE_SHOWN_SECONDS:  # waiting times as of now
        rows = [_aged(row, shared.age_seconds) for row in rows]
    return render(request, "queue.html", {"area": "queue", "items": rows}, session)


def _aged(row: dict[str, Any], age_seconds: float) -> dict[str, Any]:
    waited = row["waited_seconds"] + age_seconds
    return {**row, "waited_seconds": round(waited, 1), "waited_text": duration_text(waited)}


@router.get("/queue/snapshot")
def queue_snapshot(request: Request, _session: QueueUser) -> Response:
    """The waiting list; its waiting times are ``age_seconds`` old (the page
    adds that, as it adds the time since the snapshot came)."""
    shared = _queue_list(request)
    body = b'{"items":%s,"age_seconds":%.3f}' % (shared.value.rows_json, shared.age_seconds)
    return Response(body, media_type="application/json", headers={"Cache-Control": "no-store"})


@router.get("/queue/events")
def queue_events(request: Request, _session: QueueUser) -> StreamingResponse:
    return live_stream(request, queue_stream(parts_of(request).feed), "queue")


@router.post("/queue/take-next")
def take_next(request: Request, session: PostedByQueueUser) -> Response:
    item = parts_of(request).queue.claim_next(int(session.agent_id))
    if item is None:
        return redirect("/queue", "queue_empty")
    return redirect(f"/calls/{item.id}")


@router.post("/queue/{item_id}/take")
def take(request: Request, item_id: int, session: PostedByQueueUser) -> Response:
    try:
        item = parts_of(request).queue.claim(item_id, int(session.agent_id))
    except QueueError as refused:
        if refused.code == "no_such_item":
            raise ConsoleError("no_such_item", 404, f"There is no queue item {item_id}.") from None
        raise
    if item is None:
        return redirect("/queue", "already_taken")
    return redirect(f"/calls/{item.id}")


def _readable_item(request: Request, item_id: int, session: ConsoleSession) -> QueueItem:
    """The item, if this person may read its call page."""
    item = parts_of(request).queue.item(item_id)
    if item is None:
        raise ConsoleError("no_such_item", 404, f"There is no queue item {item_id}.")
    if item.claimed_by != int(session.agent_id) and session.role not in OVERSEEING_ROLES:
        raise ConsoleError("not_your_call", 403, "This call is not with you.")
    return item


@router.get("/calls/{item_id}", response_class=HTMLResponse)
def call_page(request: Request, item_id: int, session: QueueUser) -> Response:
    parts = parts_of(request)
    item = _readable_item(request, item_id, session)
    claimer = parts.queue.agent(item.claimed_by) if item.claimed_by is not None else None
    call = call_view(item, int(session.agent_id), claimer)
    every_turn = parts.turn_reader.turns(item.call_id)
    # The handoff has the conversation until the escalation; the live part
    # is what the caller said since.
    since_handoff = [turn for turn in every_turn if turn["created_at"] >= item.enqueued_at]
    last_turn_index = every_turn[-1]["turn_index"] if every_turn else -1
    pending = parts.queue.pending_messages(item.call_id) if call["active"] else []
    context = {
        "area": "queue",
        "call": call,
        "handoff_lines": _with_turns(call["transcript"], every_turn),
        "turns": since_handoff,
        "last_turn_index": last_turn_index,
        "sent": [message.text for message in pending],
        "dispositions": DISPOSITIONS,
        "ice_servers": json.dumps(list(parts.ice_servers)),
    }
    return render(request, "call.html", context, session)


def _with_turns(
    lines: list[tuple[str, str, str]], every_turn: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The handoff's transcript lines, each caller line with its stored turn
    (matched in order by text) so it can be flagged; ``turn`` is None where
    none matches (a line redacted since, or a call store elsewhere)."""
    said = [turn for turn in every_turn if turn["caller"]]
    shown = []
    position = 0
    for time, speaker, text in lines:
        match = None
        if speaker == "Caller":
            for index in range(position, len(said)):
                if said[index]["caller"] == text:
                    match, position = said[index], index + 1
                    break
        shown.append({"time": time, "speaker": speaker, "text": text, "turn": match})
    return shown


@router.get("/calls/{item_id}/events")
def call_events(
    request: Request,
    session: QueueUser,
    item_id: int,
    after: int = -1,
) -> StreamingResponse:
    item = _readable_item(request, item_id, session)
    # A reconnecting browser says which turn it saw last.
    last_seen = request.headers.get("last-event-id", "")
    if last_seen.isdigit():
        after = max(after, int(last_seen))
    parts = parts_of(request)
    stream = turn_stream(parts.turn_reader, item.call_id, after, parts.transcript_poll_seconds)
    # Ends when the reader may no longer read this call (signed out, or demoted).
    return live_stream(request, stream, "queue", lambda now: _readable_item(request, item_id, now))


@router.post("/calls/{item_id}/say")
def say_to_caller(
    request: Request,
    session: PostedByQueueUser,
    item_id: int,
    text: Annotated[str, Form()] = "",
) -> Response:
    item = _readable_item(request, item_id, session)
    if not text.strip():
        return redirect(f"/calls/{item_id}", "empty_message")
    try:
        parts_of(request).queue.send_to_caller(item.call_id, int(session.agent_id), text)
    except QueueError as refused:
        if refused.code == "not_claimed":
            return redirect(f"/calls/{item_id}", "not_yours")
        raise
    return redirect(f"/calls/{item_id}", "sent")


@router.post("/calls/{item_id}/turns/{turn_index}/flag")
def flag_turn(
    request: Request,
    session: PostedByQueueUser,
    item_id: int,
    turn_index: int,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Marks a caller turn as misunderstood by the bot, for the trainers' inbox."""
    item = _readable_item(request, item_id, session)
    reader = parts_of(request).turn_reader
    flagged = reader.flag(
        item.call_id, turn_index, session.agent_name, note.strip()[:MAX_NOTE_CHARS]
    )
    if flagged is None:
        raise ConsoleError("no_such_turn", 404, f"This call has no turn {turn_index}.")
    return redirect(f"/calls/{item_id}", "turn_flagged")


@router.post("/calls/{item_id}/return")
def send_back_to_bot(request: Request, item_id: int, session: PostedByQueueUser) -> Response:
    _readable_item(request, item_id, session)
    try:
        parts_of(request).queue.return_to_bot(item_id, int(session.agent_id))
    except QueueError as refused:
        if refused.code in ("not_claimed", "claimed_by_other"):
            return redirect(f"/calls/{item_id}", "not_yours")
        raise
    return redirect("/queue", "returned")


@router.post("/calls/{item_id}/resolve")
def resolve(
    request: Request,
    session: PostedByQueueUser,
    item_id: int,
    disposition: Annotated[str, Form()] = "",
    notes: Annotated[str, Form()] = "",
) -> Response:
    _readable_item(request, item_id, session)
    if disposition not in DISPOSITION_CODES:
        return redirect(f"/calls/{item_id}", "bad_disposition")
    try:
        parts_of(request).queue.resolve(item_id, int(session.agent_id), disposition, notes.strip())
    except QueueError as refused:
        if refused.code in ("not_claimed", "claimed_by_other"):
            return redirect(f"/calls/{item_id}", "not_yours")
        raise
    return redirect("/queue", "resolved")
