"""Operations: Prometheus metrics, health and readiness checks of bot
processes (``bot.ops.bot_process``) and of the console's queue
(``bot.ops.queue_metrics``), served by ``bot.ops.listener`` in bot processes
and by ``bot.console.ops`` in the console."""

from bot.ops.bot_process import BotOperations
from bot.ops.call_metrics import CallMetrics
from bot.ops.health import Readiness, database_check, run_checks
from bot.ops.listener import OperationsError, OperationsListener, parse_listen

__all__ = [
    "BotOperations",
    "CallMetrics",
    "OperationsError",
    "OperationsListener",
    "Readiness",
    "database_check",
    "parse_listen",
    "run_checks",
]
