"""Prometheus metrics of the human-agent queue, read from its database when
Prometheus scrapes (nothing is kept in memory, so every console shows the
same figures, and a restart loses none).

Four small queries per scrape: waiting items by kind (on the waiting-items
index), agents by state, queue items by reason and kind, and the newest
deployment. A database that does not answer gives
``voicebot_queue_database_up 0`` and nothing else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import datetime

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine

from bot.ops.call_metrics import NAMESPACE
from bot.queue import Clock, utc_now
from bot.queue.schema import AGENT_STATES, ITEM_KINDS, agents, items

log = logging.getLogger(__name__)

ModelName = Callable[[Engine], "str | None"]


def deployed_model(engine: Engine) -> str | None:
    """The production model as the deployment history names it."""
    from bot.training.deploy import deployed_model_name

    return deployed_model_name(engine)


class QueueCollector(Collector):
    """The queue's figures at scrape time. ``calls_engine`` holds the
    deployment history (the call store's database)."""

    def __init__(
        self,
        queue_engine: Engine,
        calls_engine: Engine | None = None,
        model_name: ModelName = deployed_model,
        clock: Clock = utc_now,
    ) -> None:
        self._queue = queue_engine
        self._calls = calls_engine or queue_engine
        self._model_name = model_name
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            f"{NAMESPACE}_queue_database_up", "Whether the queue's database answered (1) or not (0)"
        )
        try:
            figures = list(self._figures(self._clock()))
        except (sa.exc.SQLAlchemyError, OSError) as exc:
            log.warning("queue metrics: the queue's database did not answer: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from figures
        try:
            model = self._model_name(self._calls)
        except Exception as exc:  # the queue's figures still count without it
            log.warning("queue metrics: the production model is unknown: %s", exc)
            model = None
        info = GaugeMetricFamily(
            f"{NAMESPACE}_model_info", "The production dialogue model (value 1)", labels=["model"]
        )
        if model:
            info.add_metric([model], 1)
        yield info

    def _figures(self, now: datetime) -> Iterator[Metric]:
        with self._queue.connect() as conn:
            waiting = conn.execute(
                sa.select(items.c.kind, sa.func.count(), sa.func.min(items.c.enqueued_at))
                .where(items.c.status == "waiting")
                .group_by(items.c.kind)
            ).all()
            states = conn.execute(
                sa.select(agents.c.state, sa.func.count()).group_by(agents.c.state)
            ).all()
            reasons = conn.execute(
                sa.select(items.c.reason, items.c.kind, sa.func.count()).group_by(
                    items.c.reason, items.c.kind
                )
            ).all()
        length = GaugeMetricFamily(
            f"{NAMESPACE}_queue_length",
            "Items waiting for an agent, by kind (call: a caller on hold; callback: a task)",
            labels=["kind"],
        )
        longest = GaugeMetricFamily(
            f"{NAMESPACE}_queue_longest_wait_seconds",
            "How long the longest-waiting item of each kind has waited (0: none waiting)",
            labels=["kind"],
        )
        by_kind = {str(kind): (int(count), oldest) for kind, count, oldest in waiting}
        for kind in sorted(set(ITEM_KINDS) | set(by_kind)):
            count, oldest = by_kind.get(kind, (0, None))
            length.add_metric([kind], count)
            wait = (now - oldest).total_seconds() if oldest is not None else 0.0
            longest.add_metric([kind], max(0.0, wait))
        yield length
        yield longest
        agent_states = GaugeMetricFamily(
            f"{NAMESPACE}_agents", "Console accounts by agent state", labels=["state"]
        )
        by_state = {str(state): int(count) for state, count in states}
        for state in sorted(set(AGENT_STATES) | set(by_state)):
            agent_states.add_metric([state], by_state.get(state, 0))
        yield agent_states
        escalations = CounterMetricFamily(
            f"{NAMESPACE}_queue_escalations",
            "Escalations queued for a person, by reason and kind (every queue item)",
            labels=["reason", "kind"],
        )
        for reason, kind, count in sorted(reasons):
            escalations.add_metric([str(reason), str(kind)], int(count))
        yield escalations
