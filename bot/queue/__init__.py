"""The human-agent queue: escalated calls and callbacks, agents, their
messages to callers, and live change notification for consoles."""

from bot.queue.notify import QueueWatcher
from bot.queue.records import (
    Agent,
    AgentMessage,
    HourlyCount,
    QueueChange,
    QueueError,
    QueueItem,
    QueueMetrics,
    QueueSettings,
)
from bot.queue.service import AgentQueue, Clock, utc_now

__all__ = [
    "Agent",
    "AgentMessage",
    "AgentQueue",
    "Clock",
    "HourlyCount",
    "QueueChange",
    "QueueError",
    "QueueItem",
    "QueueMetrics",
    "QueueSettings",
    "QueueWatcher",
    "utc_now",
]
