"""Prometheus metrics of a bot process, kept from the calls' events.

``CallMetrics.listener`` takes every event of every call (like the call
store's listener) and moves counters and histograms; the calls in progress
and the model new calls get are read when Prometheus scrapes. Each process
has a registry of its own, so several bots (or tests) in one interpreter
never mix their figures.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.events import (
    BotSpeechStarted,
    BotTurn,
    CallEnded,
    CallEvent,
    CallStarted,
    Escalated,
)

NAMESPACE = "voicebot"
# Every channel a call can come in on: shown at 0 before its first call.
CHANNELS = ("phone", "soundcard", "file", "text")
# Seconds; a turn's stages run from tens of milliseconds to a few seconds.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
# Stage timings a bot turn carries (ms, see bot/events.py), by stage label.
TURN_STAGES = {
    "endpoint": "endpoint_ms",
    "asr_final": "asr_final_ms",
    "dialogue": "dialogue_ms",
}
# A turn the caller spoke while waiting for a person (bot/call.py).
ON_HOLD_INTENT = "on_hold"

ModelName = Callable[[], "str | None"]


class _LiveCalls(Collector):
    """Calls in progress by channel, and the model new calls get, at scrape time."""

    def __init__(self, live: dict[str, str], lock: threading.Lock, model: ModelName) -> None:
        self._live = live
        self._lock = lock
        self._model = model

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            channels = list(self._live.values())
        in_progress = GaugeMetricFamily(
            f"{NAMESPACE}_calls_in_progress", "Calls in progress", labels=["channel"]
        )
        for channel in sorted(set(CHANNELS) | set(channels)):
            in_progress.add_metric([channel], channels.count(channel))
        yield in_progress
        model = GaugeMetricFamily(
            f"{NAMESPACE}_model_info",
            "The dialogue model new calls get (value 1)",
            labels=["model"],
        )
        name = self._model()
        if name:
            model.add_metric([name], 1)
        yield model


class CallMetrics:
    """A bot process's metrics; ``listener`` is the calls' event listener."""

    def __init__(self, model_name: ModelName, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._lock = threading.Lock()
        # Call id -> channel, for calls that started and have not ended.
        self._live: dict[str, str] = {}
        self.registry.register(_LiveCalls(self._live, self._lock, model_name))
        if process:
            ProcessCollector(namespace=NAMESPACE, registry=self.registry)
        self.calls = Counter(
            "calls",
            "Calls ended, by channel and end reason",
            ["channel", "reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.turns = Counter(
            "turns",
            "Caller turns, by channel and kind (answered, unclear: asked again, on_hold)",
            ["channel", "kind"],
            namespace=NAMESPACE,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "turn_stage_seconds",
            "Time a caller turn spent in a stage: endpoint (trailing silence waited), "
            "asr_final (the recogniser's final result), dialogue, tts_first_chunk",
            ["stage"],
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.first_audio_seconds = Histogram(
            "first_audio_seconds",
            "From the caller's last speech to the bot's first audio of its answer",
            namespace=NAMESPACE,
            registry=self.registry,
            buckets=LATENCY_BUCKETS,
        )
        self.escalations = Counter(
            "escalations",
            "Calls handed to a person, by reason",
            ["reason"],
            namespace=NAMESPACE,
            registry=self.registry,
        )

    def channel_of(self, call_id: str) -> str:
        with self._lock:
            return self._live.get(call_id, "unknown")

    def listener(self, event: CallEvent) -> None:
        """Counts one event; called on the call's loop, never blocks."""
        if isinstance(event, CallStarted):
            with self._lock:
                self._live[event.call_id] = event.channel
        elif isinstance(event, BotTurn):
            self._count_turn(event)
        elif isinstance(event, BotSpeechStarted):
            if event.response_ms is not None and event.response_ms >= 0:
                self.first_audio_seconds.observe(event.response_ms / 1000)
            tts_ms = event.timings.get("tts_first_chunk_ms")
            if tts_ms is not None:
                self.stage_seconds.labels("tts_first_chunk").observe(tts_ms / 1000)
        elif isinstance(event, Escalated):
            self.escalations.labels(event.reason).inc()
        elif isinstance(event, CallEnded):
            with self._lock:
                channel = self._live.pop(event.call_id, "unknown")
            self.calls.labels(channel, event.reason.value).inc()

    def _count_turn(self, event: BotTurn) -> None:
        if event.intent == ON_HOLD_INTENT:
            kind = "on_hold"
        elif event.unclear:
            kind = "unclear"
        else:
            kind = "answered"
        self.turns.labels(self.channel_of(event.call_id), kind).inc()
        for stage, key in TURN_STAGES.items():
            ms = event.timings.get(key)
            if ms is not None:
                self.stage_seconds.labels(stage).observe(ms / 1000)
