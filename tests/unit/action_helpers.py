"""Shared helpers for the custom action tests.

Trackers are built from event dicts shaped like the ones Rasa sends, the
domain is the real domain.yml, and the backend is a real DemoBackend in a
temporary folder.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk import Action, Tracker
from rasa_sdk.events import SlotSet
from rasa_sdk.executor import CollectingDispatcher

from actions import backend as backend_module
from actions.backend import BACKEND_DB_ENV
from actions.demo_backend import DemoBackend
from actions.speech import speak_date
from actions.tasks import ActionOrderTask

ROOT = Path(__file__).resolve().parents[2]
DOMAIN: dict[str, Any] = yaml.safe_load((ROOT / "domain.yml").read_text(encoding="utf-8"))
# One business day for the whole run: the backend's clock is pinned to it, so
# expected dates stay right when the tests run across midnight.
TODAY = date.today()
INTERRUPTIONS = ["request_human", "request_callback", "repeat", "goodbye", "bot_challenge"]

Events = list[dict[str, Any]]


def when(offset: int) -> str:
    return speak_date(TODAY + timedelta(days=offset), TODAY)


def demo_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, today: date = TODAY
) -> DemoBackend:
    """A fresh demo backend on `today` that the actions open (use it from an autouse fixture)."""
    path = tmp_path / "demo.sqlite3"
    monkeypatch.setenv(BACKEND_DB_ENV, str(path))
    backend = DemoBackend(path, today=lambda: today)
    monkeypatch.setitem(backend_module._backends, path, backend)
    return backend


# -- building trackers from events ---------------------------------------------


def user(text: str, intent: str, **entities: str) -> dict[str, Any]:
    return {
        "event": "user",
        "timestamp": 1.0,
        "text": text,
        "parse_data": {
            "text": text,
            "intent": {"name": intent, "confidence": 0.95},
            "entities": [{"entity": k, "value": v} for k, v in entities.items()],
        },
        "input_channel": "voice",
    }


def bot(text: str) -> dict[str, Any]:
    return {"event": "bot", "timestamp": 1.0, "text": text, "data": {}, "metadata": {}}


def slot(name: str, value: Any) -> dict[str, Any]:
    return {"event": "slot", "timestamp": 1.0, "name": name, "value": value}


def action(name: str) -> dict[str, Any]:
    return {"event": "action", "timestamp": 1.0, "name": name}


def loop(name: str | None) -> dict[str, Any]:
    return {"event": "active_loop", "timestamp": 1.0, "name": name}


def tracker_from(events: Events) -> Tracker:
    """A tracker as Rasa would send it: slots and loop replayed from the events."""
    slots: dict[str, Any] = {n: s.get("initial_value") for n, s in DOMAIN["slots"].items()}
    slots["requested_slot"] = None
    active: str | None = None
    latest: dict[str, Any] = {}
    latest_action = None
    for event in events:
        if event["event"] == "slot":
            slots[event["name"]] = event["value"]
        elif event["event"] == "active_loop":
            active = event["name"]
        elif event["event"] == "user":
            latest = event["parse_data"]
        elif event["event"] == "action":
            latest_action = event["name"]
    return Tracker(
        "caller", slots, latest, events, False, None, {"name": active} if active else {},
        latest_action,
    )  # fmt: skip


def run(act: Action, events: Events) -> tuple[Events, list[str]]:
    """Runs an action; returns its events and what it said (text or response name)."""
    dispatcher = CollectingDispatcher()
    result = asyncio.run(act.run(dispatcher, tracker_from(events), DOMAIN))
    said = [m["text"] or m["response"] for m in dispatcher.messages]
    return result, said


# -- form turns ------------------------------------------------------------------


def form_turn(
    form: str,
    history: Events,
    answer: dict[str, Any] | None,
    extracted: dict[str, Any] | None = None,
    requested: str | None = None,
) -> Events:
    """Events of the temporary tracker Rasa's FormAction sends to validate_<form>.

    `answer` is the caller's message, `extracted` the slots action_extract_slots
    took from it (they are also the candidates to validate) and `requested`
    the slot the form was asking for (None while the form is starting).
    """
    extracted = extracted or {}
    events = list(history) + ([answer] if answer else [])
    events += [slot(k, v) for k, v in extracted.items()]
    events += [slot("requested_slot", requested), action(form)]
    return events + [slot(k, v) for k, v in extracted.items()]


def asked(form: str, slot_name: str, *extra: dict[str, Any]) -> Events:
    """History of a form that is waiting for `slot_name`."""
    return [
        action("action_listen"), *extra, action(form), loop(form),
        slot("requested_slot", slot_name), bot("question"), action("action_listen"),
    ]  # fmt: skip


def apply(history: Events, events: Events) -> Events:
    return history + [action("order_form"), *events, action("action_listen")]


# -- the order task --------------------------------------------------------------

# What action_order_task clears once the task is done.
RESET = [
    SlotSet("task", None),
    SlotSet("confirm_cancel", None),
    SlotSet("new_address", None),
    SlotSet("failed_attempts", 0.0),
]


def order_task(task: str, order_id: str, **slots: Any) -> tuple[Events, list[str]]:
    """Runs action_order_task after the order form finished with these slots."""
    events = [slot("task", task), slot("order_id", order_id)]
    events += [slot(k, v) for k, v in slots.items()]
    events += [action("order_form"), slot("requested_slot", None), loop(None)]
    return run(ActionOrderTask(), events)
