"""A report's period: local days ``[first_day, end_day)`` in one time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.reporting.records import ReportError

# The per-day series (and the SQL that groups by day) stays small.
MAX_PERIOD_DAYS = 366


def zone_named(name: str) -> ZoneInfo | None:
    """The IANA zone, or None for "" (this machine's)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ReportError("bad_timezone", f"unknown time zone {name!r}") from None


@dataclass(frozen=True)
class Period:
    """Local days from ``first_day`` to ``end_day`` (not counted) in
    ``timezone``, an IANA name or "" for this machine's zone."""

    first_day: date
    end_day: date
    timezone: str = ""

    @property
    def days(self) -> list[date]:
        count = (self.end_day - self.first_day).days
        return [self.first_day + timedelta(days=n) for n in range(count)]

    @property
    def zone_label(self) -> str:
        return self.timezone or "local"

    def midnight(self, day: date) -> datetime:
        """The start of a local day, in UTC."""
        zone = zone_named(self.timezone)
        if zone is None:
            local = datetime.combine(day, time()).astimezone()  # the machine's offset that day
        else:
            local = datetime.combine(day, time(), tzinfo=zone)
        return local.astimezone(timezone.utc)

    def boundaries(self) -> list[datetime]:
        """Each day's start in UTC, then the period's end: one more than the days."""
        return [self.midnight(day) for day in [*self.days, self.end_day]]

    def local(self, moment: datetime) -> datetime:
        zone = zone_named(self.timezone)
        return moment.astimezone(zone) if zone else moment.astimezone()


def today_in(timezone_name: str = "") -> date:
    """Today's date in the zone ("" = this machine's)."""
    zone = zone_named(timezone_name)
    return datetime.now(zone).date() if zone else datetime.now().date()


def parse_day(text: str, label: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise ReportError(
            "bad_date", f"{label}: expected a date like 2025-03-14, got {text!r}"
        ) from None


def make_period(
    from_text: str | None,
    to_text: str | None,
    timezone_name: str = "",
    labels: tuple[str, str] = ("--from", "--to"),
    today: date | None = None,
) -> Period:
    """The period from optional date texts. Neither: today. Only ``from``:
    from then through today (just that day, if it is later). Only ``to``: the
    day before it. ``to`` is always the first day not counted."""
    zone_named(timezone_name)
    today = today or today_in(timezone_name)
    first = parse_day(from_text, labels[0]) if from_text else None
    end = parse_day(to_text, labels[1]) if to_text else None
    if first is None:
        end = end or today + timedelta(days=1)
        first = end - timedelta(days=1)
    elif end is None:
        end = max(today, first) + timedelta(days=1)
    if end <= first:
        raise ReportError(
            "bad_period",
            f"{labels[1]} ({end}) must come after {labels[0]} ({first}); "
            f"{labels[1]} is the first day not counted",
        )
    if (end - first).days > MAX_PERIOD_DAYS:
        raise ReportError("bad_period", f"a period is at most {MAX_PERIOD_DAYS} days")
    return Period(first, end, timezone_name)


def last_days(count: int, timezone_name: str = "", today: date | None = None) -> Period:
    """The last ``count`` days, today included."""
    today = today or today_in(timezone_name)
    return Period(today - timedelta(days=count - 1), today + timedelta(days=1), timezone_name)
