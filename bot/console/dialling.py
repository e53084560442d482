"""Dialling a callback task from the console.

The agent who took a callback task presses *Call back now*; the request goes
to the queue's database, where a bot process with phone lines takes it and
dials (``bot.telephony.callbacks``). This route waits a few seconds for a
dialler to take it: when none does (no phone lines anywhere), the request is
withdrawn and the page says to call the number by hand, as before lines
existed. The page then follows the request: ringing, answered (connect the
headset), or not reached (the task goes back to the queue, with its attempts).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from bot.console.web import PostedByQueueUser, QueueUser, parts_of
from bot.queue import QueueError
from bot.queue.callbacks import CallbackDialling, DialRequest

router = APIRouter()

# A dialler takes a request within a second; after this there is none.
TAKEN_WITHIN_SECONDS = 5.0

MESSAGES = {
    "requested": "Waiting for a phone line…",
    "dialling": "Ringing the customer…",
    "answered": "The customer answered and hears the bot. Connect your headset.",
    "no_answer": "No answer.",
    "busy": "The line was busy.",
    "rejected": "The call was rejected.",
    "failed": "The call could not be placed.",
    "voicemail": "An answering machine took the call; the bot left a message.",
    "outside_hours": "Outside the calling hours: the task goes back to the queue until they open.",
    "unserved": "No phone lines are connected to dial out. Call the number yourself.",
}
REFUSALS = {
    "not_callback": (409, "This is not a callback task."),
    "not_claimed": (403, "This task is not with you: take it from the queue first."),
    "no_number": (409, "This task has no number to call."),
    "already_dialling": (409, "This task is being dialled already."),
    "no_such_item": (404, "There is no such task."),
}


def _view(dialling: CallbackDialling, request: DialRequest) -> dict[str, object]:
    attempts = dialling.attempts(request.item_id)
    message = MESSAGES.get(request.state, request.state)
    if request.state in ("no_answer", "busy", "rejected", "failed", "voicemail"):
        message += f" Attempt {attempts}; the task goes back to the queue"
        if request.retry_after is not None:
            message += f" until {request.retry_after.astimezone().strftime('%H:%M')}"
        message += " (or is closed as unreachable after the last attempt)."
    return {
        "request_id": request.id,
        "state": request.state,
        "number": request.number,
        "attempts": attempts,
        "message": message,
    }


def _wait_until_taken(dialling: CallbackDialling, request_id: int) -> DialRequest | None:
    deadline = time.monotonic() + TAKEN_WITHIN_SECONDS
    while time.monotonic() < deadline:
        request = dialling.get(request_id)
        if request is None or request.state != "requested":
            return request
        time.sleep(0.1)
    return dialling.unserved(request_id) or dialling.get(request_id)


@router.post("/calls/{item_id}/dial")
async def dial(request: Request, item_id: int, session: PostedByQueueUser) -> JSONResponse:
    dialling = CallbackDialling(parts_of(request).queue)
    try:
        asked = await run_in_threadpool(dialling.request, item_id, int(session.agent_id))
    except QueueError as refused:
        status, message = REFUSALS.get(refused.code, (400, str(refused)))
        return JSONResponse({"error": refused.code, "message": message}, status_code=status)
    taken = await run_in_threadpool(_wait_until_taken, dialling, asked.id)
    return JSONResponse(await run_in_threadpool(_view, dialling, taken or asked))


@router.get("/calls/{item_id}/dial/{request_id}")
async def dial_state(
    request: Request, item_id: int, request_id: int, session: QueueUser
) -> JSONResponse:
    dialling = CallbackDialling(parts_of(request).queue)
    found = await run_in_threadpool(dialling.get, request_id)
    if found is None or found.item_id != item_id or found.agent_id != int(session.agent_id):
        return JSONResponse({"error": "no_such_request", "message": "No such call."}, 404)
    return JSONResponse(await run_in_threadpool(_view, dialling, found))
