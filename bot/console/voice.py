"""Connecting a browser's audio to a live call (the console as the agent's phone).

The page posts its WebRTC offer; the offer goes into the queue's database
(``bot.queue.voice``), the bot process holding the call answers it there, and
this route hands the answer back (it waits up to ``ANSWER_SECONDS``). Only the
agent who took the call may talk on it; supervisors may listen in or whisper
to the agent. The page polls its link's state to learn of a replaced link (a
second tab) or a lost one.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from bot.console.web import PostedByQueueUser, QueueUser, parts_of
from bot.queue import QueueError
from bot.queue.voice import VoiceLink, VoiceSignals

router = APIRouter()

ANSWER_SECONDS = 15.0
POLL_SECONDS = 0.1

REFUSALS = {
    "not_claimed": (403, "This call is not with you: take it from the queue first."),
    "not_supervisor": (403, "Only supervisors may listen in or whisper."),
    "not_live": (409, "The call is not live with an agent any more."),
    "no_such_item": (404, "There is no such call."),
    "bad_offer": (400, "Your browser offered no audio. Check the microphone and reload."),
    "invalid": (400, "That is not a way to join a call."),
    "no_voice": (409, "You are not connected to this call's audio."),
}


def _refused(error: QueueError) -> JSONResponse:
    status, message = REFUSALS.get(error.code, (400, str(error)))
    return JSONResponse({"error": error.code, "message": message}, status_code=status)


def _view(link: VoiceLink) -> dict[str, object]:
    return {
        "link_id": link.id,
        "state": link.state,
        "error": link.error,
        "on_hold": link.on_hold,
    }


def _wait_for_answer(signals: VoiceSignals, link_id: int) -> VoiceLink | None:
    deadline = time.monotonic() + ANSWER_SECONDS
    while time.monotonic() < deadline:
        link = signals.link(link_id)
        if link is None or link.state not in ("offered",):
            return link
        time.sleep(POLL_SECONDS)
    return signals.link(link_id)


@router.post("/calls/{item_id}/voice")
async def connect_voice(
    request: Request,
    item_id: int,
    session: PostedByQueueUser,
    sdp: Annotated[str, Form()] = "",
    role: Annotated[str, Form()] = "agent",
) -> JSONResponse:
    signals = VoiceSignals(parts_of(request).queue)
    try:
        link = await run_in_threadpool(signals.offer, item_id, int(session.agent_id), role, sdp)
    except QueueError as refused:
        return _refused(refused)
    answered = await run_in_threadpool(_wait_for_answer, signals, link.id)
    if answered is None or answered.state == "offered":
        await run_in_threadpool(signals.set_state, link.id, "failed", "no answer")
        return JSONResponse(
            {
                "error": "no_answer",
                "message": "The bot holding this call did not answer. The caller may have "
                "hung up; the call stays in the queue if not.",
            },
            status_code=504,
        )
    if answered.state != "answered" or not answered.answer:
        return JSONResponse(
            {
                "error": "refused",
                "message": "The call's audio could not be connected: "
                f"{answered.error or answered.state}.",
            },
            status_code=502,
        )
    return JSONResponse({**_view(answered), "sdp": answered.answer})


@router.get("/calls/{item_id}/voice/{link_id}")
async def voice_state(
    request: Request, item_id: int, link_id: int, session: QueueUser
) -> JSONResponse:
    signals = VoiceSignals(parts_of(request).queue)
    link = await run_in_threadpool(signals.link, link_id)
    if link is None or link.item_id != item_id or link.agent_id != int(session.agent_id):
        return JSONResponse({"error": "no_such_link", "message": "No such connection."}, 404)
    return JSONResponse(_view(link))


@router.post("/calls/{item_id}/voice/hold")
async def hold_caller(
    request: Request,
    item_id: int,
    session: PostedByQueueUser,
    on_hold: Annotated[str, Form()] = "true",
) -> JSONResponse:
    signals = VoiceSignals(parts_of(request).queue)
    holding = on_hold.lower() in ("1", "true", "yes", "on")
    try:
        link = await run_in_threadpool(signals.set_hold, item_id, int(session.agent_id), holding)
    except QueueError as refused:
        return _refused(refused)
    return JSONResponse(_view(link))
