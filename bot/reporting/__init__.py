"""The figures a call centre is judged by, for a period of whole days.

The period is ``[from, to)``: local dates in one time zone (an IANA name such
as ``Europe/London``, or "" for this machine's), from midnight at the start of
``from`` to midnight at the start of ``to``, which is not counted. Each
midnight is converted to UTC with that day's own offset, so a day across a
daylight-saving change has 23 or 25 hours. Without dates the period is today.

Everything counts in the period in which it came in: a call by its start
(``calls.started_at``), a queue item by when it was queued (``enqueued_at``),
even if it was taken, resolved or abandoned later.

- ``calls``: calls in the call store that started in the period (every
  channel; the bot answered each of them).
- ``resolved_by_bot``: those that ended without ever being escalated, by the
  bot's goodbye (end reason ``bot_hang_up``) or by the caller hanging up
  (``caller_hang_up``). Calls that ended in silence, at the time limit, on an
  error, stopped with the bot, or that are still going are neither resolved
  by the bot nor escalated.
- ``escalated``: calls with an escalation reason; ``escalations_by_reason``
  counts them per reason (most first), ``top_escalation_reasons`` lists the
  five most frequent with their share of the escalated calls.
- ``containment_rate``: ``resolved_by_bot / calls``.
- ``abandoned``: live calls (queue items of kind ``call``) whose caller hung
  up while waiting for an agent.
- ``service_level``: of the live calls queued in the period that an agent
  took or whose caller hung up waiting, the share an agent took within
  ``service_level_seconds`` of their queueing (the console's setting, 20 s by
  default). Calls still waiting, or swapped for a call back, are not counted.
- ``average_handle_seconds``: the agents' mean handle time, from taking an
  item (claim) to resolving it, over the items (live calls and callbacks)
  agents resolved. ``bot_average_handle_seconds``: the mean duration of the
  calls the bot resolved.
- ``csat_average`` and ``csat_responses``: the mean and the number of the
  post-call survey scores (1 to 5) of the period's calls.
- ``agents``: each agent who resolved items queued in the period, with
  ``handled`` (how many), ``average_handle_seconds`` (claim to resolve) and
  ``csat_average`` (the survey scores of the calls whose items they
  resolved, joined by call id; ``csat_responses`` of them).
- ``daily``: per local day, the calls the bot resolved and the calls escalated.
- ``latest_survey_answers``: the period's ten most recent survey answers.

A rate or an average with nothing to count is None (``null`` in JSON). The
call store and the queue may live in different databases: each is read with
its own engine (counts and sums in SQL, grouped per day) and the two are
joined here by call id. A database without its tables yet reads as empty.
"""

from bot.reporting.figures import CallReports, open_reports
from bot.reporting.period import Period, last_days, make_period, today_in
from bot.reporting.records import (
    AgentFigures,
    DayFigures,
    ReasonCount,
    Report,
    ReportError,
    SurveyAnswer,
)
from bot.reporting.text import report_text

__all__ = [
    "AgentFigures",
    "CallReports",
    "DayFigures",
    "Period",
    "ReasonCount",
    "Report",
    "ReportError",
    "SurveyAnswer",
    "last_days",
    "make_period",
    "open_reports",
    "report_text",
    "today_in",
]
