"""A report as a plain-text table for the terminal (``voicebot report``)."""

from __future__ import annotations

from datetime import timedelta

from bot.reporting.records import Report


def duration_text(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``); ``-`` for no value."""
    if seconds is None:
        return "-"
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def percent_text(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def score_text(average: float | None, responses: int) -> str:
    if average is None:
        return "-"
    return f"{average:.1f} of 5 ({responses} answer{'' if responses == 1 else 's'})"


def period_text(report: Report) -> str:
    period = report.period
    last = period.end_day - timedelta(days=1)
    days = len(period.days)
    span = str(period.first_day) if days == 1 else f"{period.first_day} to {last}"
    return f"{span} ({days} day{'' if days == 1 else 's'}, {period.zone_label} time)"


def report_text(report: Report) -> str:
    level = f"{report.service_level_seconds:g}"
    lines = [
        f"Report for {period_text(report)}",
        "",
        f"{'Calls':<34}{report.calls:>8}",
        f"{'Resolved by the bot':<34}{report.resolved_by_bot:>8}",
        f"{'Escalated to people':<34}{report.escalated:>8}",
        f"{'Containment':<34}{percent_text(report.containment_rate):>8}",
        f"{'Abandoned while waiting':<34}{report.abandoned:>8}",
        f"{f'Answered by agents within {level} s':<34}{percent_text(report.service_level):>8}",
        f"{'Agents: average handle time':<34}{duration_text(report.average_handle_seconds):>8}",
        f"{'Bot: average call time':<34}" f"{duration_text(report.bot_average_handle_seconds):>8}",
        f"{'Caller satisfaction':<34}"
        f"{score_text(report.csat_average, report.csat_responses):>8}",
    ]
    if report.escalations_by_reason:
        lines += ["", "Why calls went to people"]
        for reason, count in report.escalations_by_reason.items():
            share = percent_text(count / report.escalated)
            lines.append(f"  {reason.replace('_', ' '):<32}{count:>8}{share:>7}")
    if report.agents:
        lines += ["", f"  {'Agent':<24}{'Handled':>8}{'Avg handle':>12}  Satisfaction"]
        for agent in report.agents:
            lines.append(
                f"  {agent.name:<24}{agent.handled:>8}"
                f"{duration_text(agent.average_handle_seconds):>12}  "
                f"{score_text(agent.csat_average, agent.csat_responses)}"
            )
    lines += ["", f"  {'Day':<12}{'Bot':>6}{'Escalated':>11}"]
    for day in report.daily:
        lines.append(f"  {day.day.isoformat():<12}{day.resolved_by_bot:>6}{day.escalated:>11}")
    return "\n".join(lines)
