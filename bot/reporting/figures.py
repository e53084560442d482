"""Reading a period's figures from the call store and the queue.

Calls are counted in SQL, grouped per (local day, resolved by the bot or not,
escalation reason); the day comes from CASEs over the period's midnights in
UTC, which work alike on SQLite and PostgreSQL. The queue's items of the
period are read row by row (handle times are differences of timestamps,
which the two databases compute differently) and the survey scores of the
calls agents resolved are looked up by call id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from bot.queue.schema import agents as agent_table
from bot.queue.schema import create_queue_engine
from bot.queue.schema import items as item_table
from bot.reporting.period import Period
from bot.reporting.records import (
    AgentFigures,
    DayFigures,
    ReasonCount,
    Report,
    ReportError,
    SurveyAnswer,
)
from bot.store import calls as call_table
from bot.store import create_db_engine

# End reasons of a call the bot resolved (when it was never escalated).
BOT_RESOLVED_END_REASONS = ("bot_hang_up", "caller_hang_up")
CSAT_SCORES = (1, 5)
TOP_REASONS = 5
LATEST_ANSWERS = 10
# Call ids per IN (...) list when looking up the scores of agents' calls.
_LOOKUP_CHUNK = 500


def _mean(total: float, count: int) -> float | None:
    return total / count if count else None


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _utc(moment: datetime) -> datetime:
    """SQLite hands the call store's times back naive; they are UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


@dataclass
class _CallFigures:
    """What the call store says about the period."""

    calls: int = 0
    resolved_by_bot: int = 0
    bot_seconds: float = 0.0
    bot_timed: int = 0
    csat_total: int = 0
    csat_count: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    bot_by_day: Counter[int] = field(default_factory=Counter)
    escalated_by_day: Counter[int] = field(default_factory=Counter)
    answers: list[SurveyAnswer] = field(default_factory=list)
    # False: no calls table yet, or one made before the survey columns.
    has_survey: bool = False


@dataclass
class _QueueFigures:
    """What the queue says about the items queued in the period."""

    abandoned: int = 0
    answered: int = 0
    answered_in_time: int = 0
    handle_seconds: list[float] = field(default_factory=list)
    # Per agent id: handle times, and the call ids of the items they resolved.
    agent_seconds: defaultdict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    agent_calls: defaultdict[int, list[str]] = field(default_factory=lambda: defaultdict(list))
    agent_names: dict[int, str] = field(default_factory=dict)


class CallReports:
    """Reports from the call store's database and the queue's (possibly one);
    ``close`` disposes of the engines only when this object made them."""

    def __init__(self, calls_engine: Engine, queue_engine: Engine, owns_engines: bool = False):
        self._calls = calls_engine
        self._queue = queue_engine
        self._owns_engines = owns_engines

    def close(self) -> None:
        if self._owns_engines:
            self._calls.dispose()
            if self._queue is not self._calls:
                self._queue.dispose()

    def report(
        self,
        period: Period,
        service_level_seconds: float = 20.0,
        latest_answers: int = LATEST_ANSWERS,
    ) -> Report:
        bounds = period.boundaries()
        try:
            from_calls = self._read_calls(bounds, latest_answers)
            from_queue = self._read_queue(bounds, service_level_seconds)
            agents = self._agent_figures(from_queue, from_calls.has_survey)
        except sa.exc.SQLAlchemyError as exc:
            cause = getattr(exc, "orig", None) or exc
            raise ReportError("database", f"cannot read the figures: {cause}") from exc
        escalated = sum(from_calls.by_reason.values())
        ranked = sorted(from_calls.by_reason.items(), key=lambda pair: (-pair[1], pair[0]))
        answered_or_not = from_queue.answered + from_queue.abandoned
        handle_seconds = from_queue.handle_seconds
        return Report(
            period=period,
            service_level_seconds=service_level_seconds,
            calls=from_calls.calls,
            resolved_by_bot=from_calls.resolved_by_bot,
            escalated=escalated,
            containment_rate=_share(from_calls.resolved_by_bot, from_calls.calls),
            escalations_by_reason=dict(ranked),
            top_escalation_reasons=tuple(
                ReasonCount(reason, count, count / escalated)
                for reason, count in ranked[:TOP_REASONS]
            ),
            abandoned=from_queue.abandoned,
            service_level=_share(from_queue.answered_in_time, answered_or_not),
            average_handle_seconds=_mean(sum(handle_seconds), len(handle_seconds)),
            bot_average_handle_seconds=_mean(from_calls.bot_seconds, from_calls.bot_timed),
            csat_average=_mean(from_calls.csat_total, from_calls.csat_count),
            csat_responses=from_calls.csat_count,
            agents=agents,
            daily=tuple(
                DayFigures(day, from_calls.bot_by_day[n], from_calls.escalated_by_day[n])
                for n, day in enumerate(period.days)
            ),
            latest_survey_answers=tuple(from_calls.answers),
        )

    # -- the call store

    def _read_calls(self, bounds: Sequence[datetime], latest_answers: int) -> _CallFigures:
        figures = _CallFigures()
        with self._calls.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(call_table.name):
                return figures
            columns = {column["name"] for column in inspector.get_columns(call_table.name)}
            figures.has_survey = "csat_score" in columns
            for row in conn.execute(_calls_by_day(bounds, figures.has_survey)).mappings():
                _count_calls(figures, row)
            if figures.has_survey and latest_answers > 0:
                figures.answers = _latest_answers(conn, bounds, latest_answers)
        return figures

    def _scores_of(self, call_ids: Iterable[str]) -> dict[str, int]:
        """The survey scores of these calls, of those that have one."""
        wanted = sorted(set(call_ids))
        scores: dict[str, int] = {}
        score = call_table.c.csat_score
        with self._calls.connect() as conn:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                found = conn.execute(
                    sa.select(call_table.c.call_id, score).where(
                        call_table.c.call_id.in_(wanted[start : start + _LOOKUP_CHUNK]),
                        score.between(*CSAT_SCORES),
                    )
                )
                scores.update({str(call_id): int(value) for call_id, value in found})
        return scores

    # -- the queue

    def _read_queue(self, bounds: Sequence[datetime], level_seconds: float) -> _QueueFigures:
        figures = _QueueFigures()
        items = item_table.c
        with self._queue.connect() as conn:
            if not sa.inspect(conn).has_table(item_table.name):
                return figures
            found = conn.execute(
                sa.select(
                    items.call_id, items.kind, items.status, items.claimed_by,
                    items.enqueued_at, items.claimed_at, items.resolved_at,
                ).where(items.enqueued_at >= bounds[0], items.enqueued_at < bounds[-1])
            ).mappings()  # fmt: skip
            for row in found:
                _count_item(figures, row, level_seconds)
            if figures.agent_seconds:
                figures.agent_names = _agent_names(conn, figures.agent_seconds)
        return figures

    def _agent_figures(self, figures: _QueueFigures, has_survey: bool) -> tuple[AgentFigures, ...]:
        scores: dict[str, int] = {}
        if has_survey:
            scores = self._scores_of(c for calls in figures.agent_calls.values() for c in calls)
        rows = []
        for agent_id, seconds in figures.agent_seconds.items():
            # A call counts once per agent, even when they resolved two of its items.
            call_ids = dict.fromkeys(figures.agent_calls[agent_id])
            rated = [scores[call_id] for call_id in call_ids if call_id in scores]
            rows.append(
                AgentFigures(
                    agent_id=agent_id,
                    name=figures.agent_names.get(agent_id, f"agent {agent_id}"),
                    handled=len(seconds),
                    average_handle_seconds=_mean(sum(seconds), len(seconds)),
                    csat_average=_mean(sum(rated), len(rated)),
                    csat_responses=len(rated),
                )
            )
        return tuple(sorted(rows, key=lambda agent: (agent.name, agent.agent_id)))


def _day_of(moment: Any, bounds: Sequence[datetime], first: int, end: int) -> Any:
    """The index of the day holding ``moment``, known to lie in days
    ``[first, end)``: CASEs nested as a binary search, so a row meets about
    log2(days) comparisons rather than one per day."""
    if end - first == 1:
        return sa.literal(first, sa.Integer)
    middle = (first + end) // 2
    return sa.case(
        (moment < bounds[middle], _day_of(moment, bounds, first, middle)),
        else_=_day_of(moment, bounds, middle, end),
    )


def _calls_by_day(bounds: Sequence[datetime], has_survey: bool) -> Any:
    """Calls counted per (day, resolved by the bot or not, escalation reason),
    with the bot-resolved calls' durations and the survey scores' sums."""
    c = call_table.c
    day = _day_of(c.started_at, bounds, 0, len(bounds) - 1)
    bot_resolved = sa.case(
        (
            sa.and_(
                c.ended_at.is_not(None),
                c.escalation_reason.is_(None),
                c.end_reason.in_(BOT_RESOLVED_END_REASONS),
            ),
            1,
        ),
        else_=0,
    )
    csat: Any = sa.null()
    if has_survey:
        csat = sa.case((c.csat_score.between(*CSAT_SCORES), c.csat_score), else_=None)
    # Grouped outside: PostgreSQL would not match a CASE with bound values in
    # GROUP BY to the same CASE in the select list.
    per_call = (
        sa.select(
            day.label("day"),
            bot_resolved.label("bot_resolved"),
            c.escalation_reason.label("escalation_reason"),
            c.duration_ms.label("duration_ms"),
            csat.label("csat"),
        )
        .where(c.started_at >= bounds[0], c.started_at < bounds[-1])
        .subquery()
    )
    p = per_call.c
    return sa.select(
        p.day,
        p.bot_resolved,
        p.escalation_reason,
        sa.func.count().label("calls"),
        sa.func.sum(p.duration_ms).label("duration_ms"),
        sa.func.count(p.duration_ms).label("timed"),
        sa.func.sum(p.csat).label("csat_total"),
        sa.func.count(p.csat).label("csat_count"),
    ).group_by(p.day, p.bot_resolved, p.escalation_reason)


def _count_calls(figures: _CallFigures, row: Mapping[str, Any]) -> None:
    count, day = int(row["calls"]), int(row["day"])
    figures.calls += count
    if row["bot_resolved"]:
        figures.resolved_by_bot += count
        figures.bot_by_day[day] += count
        figures.bot_seconds += float(row["duration_ms"] or 0) / 1000
        figures.bot_timed += int(row["timed"])
    if row["escalation_reason"] is not None:
        figures.by_reason[str(row["escalation_reason"])] += count
        figures.escalated_by_day[day] += count
    figures.csat_total += int(row["csat_total"] or 0)
    figures.csat_count += int(row["csat_count"])


def _latest_answers(conn: Connection, bounds: Sequence[datetime], limit: int) -> list[SurveyAnswer]:
    c = call_table.c
    found = conn.execute(
        sa.select(c.call_id, c.csat_score, c.csat_via, c.csat_at)
        .where(
            c.started_at >= bounds[0],
            c.started_at < bounds[-1],
            c.csat_score.between(*CSAT_SCORES),
        )
        .order_by(c.csat_at.desc().nulls_last(), c.started_at.desc(), c.call_id)
        .limit(limit)
    )
    return [
        SurveyAnswer(str(call_id), int(score), via, None if at is None else _utc(at))
        for call_id, score, via, at in found
    ]


def _count_item(figures: _QueueFigures, row: Mapping[str, Any], level_seconds: float) -> None:
    claimed_at: datetime | None = row["claimed_at"]
    if row["kind"] == "call":
        if row["status"] == "abandoned":
            figures.abandoned += 1
        elif claimed_at is not None:
            figures.answered += 1
            waited = (claimed_at - row["enqueued_at"]).total_seconds()
            figures.answered_in_time += int(waited <= level_seconds)
    agent_id = row["claimed_by"]
    if row["status"] == "resolved" and claimed_at is not None and agent_id is not None:
        seconds = (row["resolved_at"] - claimed_at).total_seconds()
        figures.handle_seconds.append(seconds)
        figures.agent_seconds[int(agent_id)].append(seconds)
        figures.agent_calls[int(agent_id)].append(str(row["call_id"]))


def _agent_names(conn: Connection, agent_ids: Iterable[int]) -> dict[int, str]:
    table = agent_table.c
    found = conn.execute(sa.select(table.id, table.name).where(table.id.in_(list(agent_ids))))
    return {int(agent_id): str(name) for agent_id, name in found}


def open_reports(calls_url: str, queue_url: str = "") -> CallReports:
    """Reports on the call store at ``calls_url`` and the queue at ``queue_url``
    (the same database when empty). A database without a call store (a
    missing SQLite file, or no ``calls`` table: most likely a wrong URL) is
    an error rather than an empty report."""
    queue_url = queue_url or calls_url
    shown = sa.engine.make_url(calls_url).render_as_string(hide_password=True)
    for url in dict.fromkeys((calls_url, queue_url)):
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).is_file():
            raise ReportError("no_store", f"no call store at {url}: the file does not exist")
    calls_engine = create_db_engine(calls_url)
    try:
        with calls_engine.connect() as conn:
            found = sa.inspect(conn).has_table(call_table.name)
    except sa.exc.SQLAlchemyError as exc:
        calls_engine.dispose()
        cause = getattr(exc, "orig", None) or exc
        raise ReportError("database", f"cannot read the call store at {shown}: {cause}") from exc
    if not found:
        calls_engine.dispose()
        raise ReportError("no_store", f"no call store at {shown}: it has no calls table")
    queue_engine = calls_engine if queue_url == calls_url else create_queue_engine(queue_url)
    return CallReports(calls_engine, queue_engine, owns_engines=True)
