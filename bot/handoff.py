"""The handoff package: everything an agent needs so the caller never repeats
themselves, and the one-paragraph summary the bot writes from it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

REASON_TEXT = {
    "explicit_request": "the caller asked for a person",
    "callback_requested": "the caller asked to be called back",
    "repeated_fallback": "the bot did not understand the caller twice in a row",
    "no_progress": "the caller could not give the details the bot asked for",
    "action_failure": "the bot could not reach the order systems",
    "complaint": "the complaint is serious",
    "caller_frustrated": "the caller is frustrated",
}
TASK_TEXT = {
    "order_status": "the status of an order",
    "delivery_problem": "a delivery problem",
    "change_address": "changing a delivery address",
    "cancel_order": "cancelling an order",
    "return_item": "returning an item",
    "refund_status": "a refund",
    "billing_question": "a question about a bill",
    "payment_problem": "a payment that failed",
    "account_help": "help with their account",
    "complaint": "a complaint",
    "opening_hours": "opening hours",
    "request_callback": "a callback",
}
DETAIL_SLOTS = ("order_id", "email", "phone_number", "ticket_id", "new_address", "complaint_text")
DETAIL_NAMES = {
    "order_id": "order",
    "email": "e-mail",
    "phone_number": "phone",
    "ticket_id": "complaint ticket",
    "new_address": "new address",
    "complaint_text": "complaint",
}


@dataclass(frozen=True)
class TranscriptLine:
    t_ms: int
    speaker: str  # "caller" or "bot"
    text: str


@dataclass(frozen=True)
class Handoff:
    call_id: str
    reason: str
    priority: int
    skill: str
    caller_number: str | None
    intents: list[dict[str, Any]]
    details: dict[str, str]
    transcript: list[dict[str, Any]]
    summary: str = ""
    channel: str = "voice"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(intents: Sequence[str], details: Mapping[str, str], reason: str) -> str:
    """One paragraph an agent can read in five seconds."""
    tasks = []
    for intent in intents:
        text = TASK_TEXT.get(intent)
        if text and text not in tasks:
            tasks.append(text)
    if tasks:
        about = tasks[0] if len(tasks) == 1 else ", ".join(tasks[:-1]) + " and " + tasks[-1]
        sentences = [f"The caller called about {about}."]
    else:
        sentences = ["The caller did not get as far as saying what they need."]
    known = [
        f"{DETAIL_NAMES[name]} {details[name]}"
        for name in DETAIL_SLOTS
        if details.get(name) and name != "complaint_text"
    ]
    if known:
        sentences.append("Details given: " + ", ".join(known) + ".")
    if details.get("complaint_text"):
        sentences.append(f'Their complaint: "{details["complaint_text"]}".')
    sentences.append(f"Transferred because {REASON_TEXT.get(reason, reason.replace('_', ' '))}.")
    return " ".join(sentences)


def build_handoff(
    call_id: str,
    reason: str,
    priority: int,
    skill: str,
    turns: Sequence[Mapping[str, Any]],
    transcript: Sequence[TranscriptLine],
    slots: Mapping[str, Any],
    caller_number: str | None = None,
    channel: str = "voice",
) -> Handoff:
    """``turns``: the caller's turns with ``intent`` and ``confidence``."""
    details = {name: str(slots[name]) for name in DETAIL_SLOTS if slots.get(name)}
    intents = [
        {
            "intent": str(t.get("intent") or ""),
            "confidence": round(float(t.get("confidence") or 0), 3),
        }
        for t in turns
        if t.get("intent")
    ]
    number = caller_number or details.get("phone_number")
    return Handoff(
        call_id=call_id,
        reason=reason,
        priority=priority,
        skill=skill,
        caller_number=number,
        intents=intents,
        details=details,
        transcript=[asdict(line) for line in transcript],
        summary=summarise([str(i["intent"]) for i in intents], details, reason),
        channel=channel,
    )
