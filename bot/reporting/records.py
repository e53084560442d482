"""What a report holds, and its error."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.reporting.period import Period


class ReportError(Exception):
    """A report that cannot be made; ``code`` says why: ``bad_date``,
    ``bad_period``, ``bad_timezone``, ``no_store`` or ``database``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class AgentFigures:
    agent_id: int
    name: str
    handled: int
    average_handle_seconds: float | None
    csat_average: float | None
    csat_responses: int


@dataclass(frozen=True)
class DayFigures:
    day: date
    resolved_by_bot: int
    escalated: int


@dataclass(frozen=True)
class ReasonCount:
    reason: str
    calls: int
    # Of all escalated calls, from 0 to 1.
    share: float


@dataclass(frozen=True)
class SurveyAnswer:
    call_id: str
    score: int
    via: str | None
    answered_at: datetime | None


@dataclass(frozen=True)
class Report:
    """The figures of one period (defined in ``bot.reporting``)."""

    period: Period
    service_level_seconds: float
    calls: int
    resolved_by_bot: int
    escalated: int
    containment_rate: float | None
    escalations_by_reason: dict[str, int]
    top_escalation_reasons: tuple[ReasonCount, ...]
    abandoned: int
    service_level: float | None
    average_handle_seconds: float | None
    bot_average_handle_seconds: float | None
    csat_average: float | None
    csat_responses: int
    agents: tuple[AgentFigures, ...]
    daily: tuple[DayFigures, ...]
    latest_survey_answers: tuple[SurveyAnswer, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ISO dates and times, rates from 0 to 1, None for no value."""
        return {
            "from": self.period.first_day.isoformat(),
            "to": self.period.end_day.isoformat(),
            "timezone": self.period.zone_label,
            "service_level_seconds": self.service_level_seconds,
            "calls": self.calls,
            "resolved_by_bot": self.resolved_by_bot,
            "escalated": self.escalated,
            "containment_rate": self.containment_rate,
            "escalations_by_reason": dict(self.escalations_by_reason),
            "top_escalation_reasons": [
                {"reason": r.reason, "calls": r.calls, "share": r.share}
                for r in self.top_escalation_reasons
            ],
            "abandoned": self.abandoned,
            "service_level": self.service_level,
            "average_handle_seconds": self.average_handle_seconds,
            "bot_average_handle_seconds": self.bot_average_handle_seconds,
            "csat_average": self.csat_average,
            "csat_responses": self.csat_responses,
            "agents": [
                {
                    "agent_id": a.agent_id,
                    "agent": a.name,
                    "handled": a.handled,
                    "average_handle_seconds": a.average_handle_seconds,
                    "csat_average": a.csat_average,
                    "csat_responses": a.csat_responses,
                }
                for a in self.agents
            ],
            "daily": [
                {
                    "date": d.day.isoformat(),
                    "resolved_by_bot": d.resolved_by_bot,
                    "escalated": d.escalated,
                }
                for d in self.daily
            ],
            "latest_survey_answers": [
                {
                    "call_id": s.call_id,
                    "score": s.score,
                    "via": s.via,
                    "answered_at": s.answered_at.isoformat() if s.answered_at else None,
                }
                for s in self.latest_survey_answers
            ],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False)
