"""The supervisors' pages: today's live queue figures, and the report of a
chosen period (``bot.reporting``) as cards, a daily chart, tables and JSON."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from bot.console.chart import daily_bars_svg, hourly_bars_svg
from bot.console.views import (
    agent_rows,
    metric_cards,
    period_label,
    reason_rows,
    report_cards,
    survey_rows,
)
from bot.console.web import Supervisor, parts_of, render
from bot.reporting import CallReports, Period, Report, ReportError, last_days, make_period

router = APIRouter()

# The period chooser's shortcuts: (label, days up to and including today).
PRESETS = (("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))
# Fields of the period form, as its errors name them.
FIELD_LABELS = ("From", "To")

FromDay = Annotated[str, Query(alias="from")]
ToDay = Annotated[str, Query(alias="to")]


def reports_of(request: Request) -> CallReports:
    reports: CallReports = request.app.state.reports
    return reports


def _period_query(period: Period) -> str:
    return urlencode({"from": period.first_day.isoformat(), "to": period.end_day.isoformat()})


def _report(request: Request, from_day: str, to_day: str) -> Report:
    """The report of the period asked for, in the queue's day time zone."""
    parts = parts_of(request)
    zone = parts.queue.settings.day_timezone
    period = make_period(from_day or None, to_day or None, zone, FIELD_LABELS)
    return reports_of(request).report(period, parts.service_level_seconds)


def _presets(zone: str, current: Period | None) -> list[tuple[str, str, bool]]:
    """(label, link, whether it is the period shown) for each shortcut."""
    presets = []
    for label, days in PRESETS:
        period = last_days(days, zone)
        presets.append((label, f"/dashboard?{_period_query(period)}", period == current))
    return presets


def _status_of(error: ReportError) -> int:
    return 503 if error.code == "database" else 400


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request, session: Supervisor, from_day: FromDay = "", to_day: ToDay = ""
) -> Response:
    parts = parts_of(request)
    metrics = parts.queue.metrics_today(parts.service_level_seconds)
    zone = parts.queue.settings.day_timezone
    context: dict[str, Any] = {
        "area": "dashboard",
        "metrics": metric_cards(metrics),
        "chart_svg": hourly_bars_svg(
            [hour.enqueued for hour in metrics.hourly], "Calls and callbacks queued per hour today"
        ),
        "from_value": from_day,
        "to_value": to_day,
        "report": None,
        "report_error": "",
    }
    try:
        report = _report(request, from_day, to_day)
    except ReportError as error:
        # The form keeps what was typed, with the error beside it.
        context.update(report_error=str(error), presets=_presets(zone, None))
        return render(request, "dashboard.html", context, session, _status_of(error))
    period = report.period
    query = _period_query(period)
    context.update(
        {
            "from_value": period.first_day.isoformat(),
            "to_value": period.end_day.isoformat(),
            "presets": _presets(zone, period),
            "report": {
                "period": period_label(period),
                "zone": period.zone_label,
                "cards": report_cards(report),
                "chart_svg": daily_bars_svg(
                    [(day.day, day.resolved_by_bot, day.escalated) for day in report.daily]
                ),
                "reasons": reason_rows(report),
                "agents": agent_rows(report),
                "surveys": survey_rows(report),
                "json_url": f"/dashboard/report.json?{query}",
            },
        }
    )
    return render(request, "dashboard.html", context, session)


@router.get("/dashboard/report.json")
def report_json(
    request: Request, _session: Supervisor, from_day: FromDay = "", to_day: ToDay = ""
) -> JSONResponse:
    """The same report as the page, as a JSON download."""
    try:
        report = _report(request, from_day, to_day)
    except ReportError as error:
        return JSONResponse(
            {"error": error.code, "message": str(error)}, status_code=_status_of(error)
        )
    first, end = report.period.first_day, report.period.end_day
    filename = f"report-{first.isoformat()}-to-{end.isoformat()}.json"
    return JSONResponse(
        report.to_dict(), headers={"Content-Disposition": f'attachment; filename="{filename}"'}
    )
