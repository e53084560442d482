"""What the console's pages show, built from queue records, call-store rows and reports.

Pure functions: they turn records into plain dicts and strings for the
templates and the JSON snapshot, and format times and numbers for people.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from bot.events import AGENT_SPEECH_INTENT
from bot.queue import Agent, QueueItem, QueueMetrics
from bot.reporting import Period, Report

DISPOSITIONS: tuple[tuple[str, str], ...] = (
    ("resolved", "Resolved"),
    ("callback_scheduled", "Callback scheduled"),
    ("refund_issued", "Refund issued"),
    ("escalated_further", "Escalated further"),
    ("no_answer", "No answer"),
    ("other", "Other"),
)
DISPOSITION_CODES = frozenset(code for code, _label in DISPOSITIONS)

# The states an agent may pick; "on a call" is set by taking a call.
SETTABLE_STATES: tuple[tuple[str, str], ...] = (
    ("available", "Available"),
    ("wrap_up", "Wrap-up"),
    ("offline", "Offline"),
)
STATE_LABELS = dict(SETTABLE_STATES) | {"on_call": "On a call"}

STATUS_LABELS = {
    "waiting": "waiting",
    "claimed": "with an agent",
    "resolved": "resolved",
    "returned": "back with the bot",
    "abandoned": "caller hung up",
}


@dataclass(frozen=True)
class Notice:
    kind: str  # ok | info | error
    text: str


# Messages the pages show after a redirect; the URL carries only the code.
NOTICES = {
    "already_taken": Notice("error", "Someone else already took that call."),
    "queue_empty": Notice("info", "No one is waiting for your skills right now."),
    "resolved": Notice("ok", "Call resolved."),
    "returned": Notice("ok", "The call went back to the bot."),
    "sent": Notice("ok", "Sent: the bot will say it to the caller."),
    "empty_message": Notice("error", "Type something to say first."),
    "not_yours": Notice("error", "That call is no longer with you."),
    "bad_disposition": Notice("error", "Choose a disposition from the list."),
    "state_set": Notice("ok", "Your state is updated."),
    "turn_flagged": Notice("ok", "Flagged: the trainers will see that the bot misunderstood."),
}


def notice_for(code: str | None) -> Notice | None:
    return NOTICES.get(code or "")


def duration_text(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); an em dash for no value."""
    if seconds is None:
        return "—"
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def call_time_text(t_ms: int | float | None) -> str:
    """A moment in the call, from its start: ``m:ss``."""
    return duration_text(None if t_ms is None else t_ms / 1000)


def percent_text(share: float | None) -> str:
    return "—" if share is None else f"{share * 100:.0f}%"


def priority_label(priority: int) -> str:
    if priority > 0:
        return f"high ({priority})"
    if priority < 0:
        return f"low ({priority})"
    return "normal"


def reason_label(reason: str) -> str:
    """A reason code for people: ``explicit_request`` reads "explicit request"."""
    return reason.replace("_", " ")


def queue_row(item: QueueItem) -> dict[str, Any]:
    """One waiting item, as the queue page and its JSON snapshot show it."""
    waited = item.waiting_seconds or 0.0
    return {
        "id": item.id,
        "call_id": item.call_id,
        "position": item.position,
        "kind": item.kind,
        "reason": reason_label(item.reason),
        "priority": item.priority,
        "priority_label": priority_label(item.priority),
        "priority_high": item.priority > 0,
        "skill": item.skill,
        "waited_seconds": round(waited, 1),
        "waited_text": duration_text(waited),
        "summary": item.summary,
        "caller_number": item.caller_number or "",
    }


def _intents(raw: Any) -> list[tuple[str, str]]:
    """Intent names with confidences as percentages, from a list or a mapping."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(raw, Mapping):
        pairs = list(raw.items())
    elif isinstance(raw, Sequence) and not isinstance(raw, str):
        for entry in raw:
            if isinstance(entry, Mapping):
                # The handoff package writes "intent"; "name" is Rasa's own key.
                name = entry.get("intent") or entry.get("name") or "?"
                pairs.append((str(name), entry.get("confidence")))
            else:
                pairs.append((str(entry), None))
    shown = []
    for name, confidence in pairs:
        text = percent_text(float(confidence)) if isinstance(confidence, int | float) else "—"
        shown.append((str(name), text))
    return shown


def _details(raw: Any) -> list[tuple[str, str]]:
    if not isinstance(raw, Mapping):
        return []
    shown = []
    for key, value in raw.items():
        if value in (None, "", [], {}):
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown.append((str(key).replace("_", " "), text))
    return shown


def _transcript(raw: Any) -> list[tuple[str, str, str]]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        return []
    lines = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            continue
        speaker = str(entry.get("speaker", "")).strip() or "?"
        lines.append(
            (call_time_text(entry.get("t_ms")), speaker.capitalize(), str(entry.get("text", "")))
        )
    return lines


def call_view(item: QueueItem, agent_id: int, claimer: Agent | None) -> dict[str, Any]:
    """The call page's handoff package and status, for the agent ``agent_id``."""
    handoff = item.handoff if isinstance(item.handoff, Mapping) else {}
    details = handoff.get("details", handoff.get("slots", {}))
    return {
        "item_id": item.id,
        "call_id": item.call_id,
        "kind_label": "Live call" if item.kind == "call" else "Callback request",
        "status": item.status,
        "status_label": STATUS_LABELS.get(item.status, item.status),
        "claimed_by_name": claimer.name if claimer else "",
        "active": item.status == "claimed" and item.claimed_by == agent_id,
        # A live call with an agent: its audio can be joined from the browser.
        "live_voice": item.kind == "call" and item.status == "claimed",
        "callback": item.kind == "callback",
        "reason": reason_label(item.reason),
        "caller_number": item.caller_number or "",
        "priority_label": priority_label(item.priority),
        "priority_high": item.priority > 0,
        "skill": item.skill,
        "waited_text": duration_text(item.waiting_seconds),
        "summary": item.summary or str(handoff.get("summary", "")),
        "intents": _intents(handoff.get("intents", [])),
        "details": _details(details),
        "transcript": _transcript(handoff.get("transcript", [])),
    }


def turn_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """One turn of the call store (caller's words and the bot's replies)."""
    bot_text = row.get("bot_text") or "[]"
    replies = json.loads(bot_text) if isinstance(bot_text, str) else list(bot_text)
    words = str(row.get("transcript") or "")
    agent = row.get("intent") == AGENT_SPEECH_INTENT
    return {
        "turn_index": int(row["turn_index"]),
        "t_ms": int(row["t_ms"]),
        "time": call_time_text(row["t_ms"]),
        "caller": "" if agent else words,
        "agent": words if agent else "",
        "bot": [str(text) for text in replies],
    }


def metric_cards(metrics: QueueMetrics) -> list[tuple[str, str, str]]:
    """(key, label, value) for each figure on the dashboard."""
    level_seconds = f"{metrics.service_level_seconds:g}"
    return [
        ("queue_length", "Waiting now", str(metrics.queue_length)),
        ("longest_wait", "Longest wait", duration_text(metrics.longest_wait_seconds)),
        ("calls_handled", "Handled today", str(metrics.calls_handled)),
        ("average_handle", "Average handle time", duration_text(metrics.average_handle_seconds)),
        ("abandonment_rate", "Abandoned", percent_text(metrics.abandonment_rate)),
        (
            "service_level",
            f"Answered within {level_seconds}\u00a0s",
            percent_text(metrics.service_level),
        ),
    ]


def period_label(period: Period) -> str:
    """``29 Mar 2025 – 31 Mar 2025 (3 days)``, the last day being the one before ``to``."""
    last = period.end_day - timedelta(days=1)
    days = len(period.days)
    if days == 1:
        return f"{day_text(period.first_day)} (1 day)"
    return f"{day_text(period.first_day)} – {day_text(last)} ({days} days)"


MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def day_text(day: date) -> str:
    """``29 Mar 2025``, the same in every locale."""
    return f"{day.day} {MONTH_NAMES[day.month - 1]} {day.year}"


def score_text(average: float | None) -> str:
    return "—" if average is None else f"{average:.1f}"


def report_cards(report: Report) -> list[tuple[str, str, str]]:
    """(key, label, value) for each figure of a period's report."""
    level_seconds = f"{report.service_level_seconds:g}"
    return [
        ("calls", "Calls", str(report.calls)),
        ("resolved_by_bot", "Resolved by the bot", str(report.resolved_by_bot)),
        ("containment_rate", "Containment", percent_text(report.containment_rate)),
        ("escalated", "Went to people", str(report.escalated)),
        ("abandoned", "Hung up waiting", str(report.abandoned)),
        (
            "service_level",
            f"Answered within {level_seconds}\u00a0s",
            percent_text(report.service_level),
        ),
        ("average_handle", "Agents' handle time", duration_text(report.average_handle_seconds)),
        ("bot_average_handle", "Bot's call time", duration_text(report.bot_average_handle_seconds)),
        (
            "csat_average",
            f"Satisfaction, {report.csat_responses} answers",
            score_text(report.csat_average),
        ),
    ]


def reason_rows(report: Report) -> list[dict[str, Any]]:
    """The top reasons for escalation, most frequent first."""
    return [
        {
            "reason": reason.reason,
            "label": reason_label(reason.reason),
            "calls": reason.calls,
            "share": percent_text(reason.share),
        }
        for reason in report.top_escalation_reasons
    ]


def agent_rows(report: Report) -> list[dict[str, Any]]:
    return [
        {
            "name": agent.name,
            "handled": agent.handled,
            "average_handle": duration_text(agent.average_handle_seconds),
            "csat": score_text(agent.csat_average),
            "csat_responses": agent.csat_responses,
        }
        for agent in report.agents
    ]


def survey_rows(report: Report) -> list[dict[str, Any]]:
    """The latest survey answers, with their time in the report's zone."""
    rows = []
    for answer in report.latest_survey_answers:
        when = report.period.local(answer.answered_at) if answer.answered_at else None
        rows.append(
            {
                "call_id": answer.call_id,
                "score": answer.score,
                "via": answer.via or "—",
                "when": f"{day_text(when.date())} {when:%H:%M}" if when else "—",
            }
        )
    return rows
