"""Operations of one bot process (``voicebot serve``, ``run``, ``call``):
its call metrics, its readiness checks and the listener serving both.

Ready means the process can take a call now: the dialogue model is loaded,
the process has started answering, the databases answer (the call store and
queue; the tracker store and the Redis lock store when configured) and the
action server answers its health check.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL

from bot.action_server import health_ok
from bot.events import CallEvent
from bot.ops.call_metrics import CallMetrics
from bot.ops.health import Check, Readiness, database_check, run_checks
from bot.ops.listener import OperationsListener

if TYPE_CHECKING:
    from bot.call import CallEngine


class BotOperations:
    """Metrics and health of a bot process; ``listen`` starts its HTTP listener."""

    def __init__(self, engine: CallEngine) -> None:
        self.engine = engine
        self.metrics = CallMetrics(self._model_name)
        self._answering = threading.Event()
        # Database checks by URL (each keeps a connection-less probe engine).
        self._database_checks: dict[URL | str, Check] = {}
        self._redis: Any = None
        self._lock = threading.Lock()
        self.listener: OperationsListener | None = None

    # -- events

    def record(self, event: CallEvent) -> None:
        """The calls' event listener."""
        self.metrics.listener(event)

    def mark_answering(self) -> None:
        """Everything is loaded: the process now takes calls."""
        self._answering.set()

    # -- listener

    def listen(self, host: str, port: int) -> OperationsListener:
        """Starts serving /metrics, /healthz and /readyz (OperationsError when the
        address cannot be used)."""
        self.listener = OperationsListener(host, port, self.metrics.registry, self.readiness)
        return self.listener.start()

    def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
        if self._redis is not None:
            self._redis.close()

    # -- readiness

    def readiness(self) -> Readiness:
        return run_checks(self.checks())

    def checks(self) -> dict[str, Check]:
        settings = self.engine.settings.dialogue
        checks: dict[str, Check] = {
            "model": self._model_check,
            "answering": self._answering_check,
            "database": self._store_check,
            "action_server": self._action_server_check,
        }
        if settings.tracker_store_url:
            checks["tracker_store"] = self._tracker_store_check
        if settings.lock_store_url:
            checks["lock_store"] = self._lock_store_check
        return checks

    def _model_name(self) -> str | None:
        try:
            return self.engine.model_name
        except RuntimeError:  # not started yet
            return None

    def _model_check(self) -> str | None:
        return None if self._model_name() else "the dialogue model is not loaded yet"

    def _answering_check(self) -> str | None:
        return None if self._answering.is_set() else "not answering calls yet (still loading)"

    def _store_check(self) -> str | None:
        store = self.engine.store
        if store is None:
            return "the call store is not open yet"
        return self._database(store.engine.url)()

    def _action_server_check(self) -> str | None:
        configured = self.engine.settings.dialogue.actions_url
        if configured:
            base = configured.rstrip("/").removesuffix("/webhook")
            return None if health_ok(base) else f"the action server at {base} does not answer"
        # The engine's own supervised server.
        server = self.engine.action_server
        if server is None:
            return "the action server is not started yet"
        if not server.alive():
            return "the action server has exited (it is restarted before the next turn)"
        if not health_ok(server.base_url):
            return f"the action server at {server.base_url} does not answer"
        return None

    def _database(self, url: URL | str) -> Check:
        with self._lock:
            check = self._database_checks.get(url)
            if check is None:
                check = self._database_checks[url] = database_check(url)
        return check

    def _tracker_store_check(self) -> str | None:
        return self._database(self.engine.settings.dialogue.tracker_store_url)()

    def _lock_store_check(self) -> str | None:
        url = self.engine.settings.dialogue.lock_store_url
        with self._lock:
            if self._redis is None:
                import redis  # type: ignore[import-untyped]

                self._redis = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            self._redis.ping()
        except Exception as exc:  # redis raises its own error types
            return f"the lock store at {url} does not answer: {exc}"
        return None
