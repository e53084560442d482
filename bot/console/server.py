"""Serving the console with uvicorn: in the foreground, or in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

import uvicorn

from bot.console.app import ConsoleSettings, create_app
from bot.settings import Settings

# Open live streams (Server-Sent Events) never finish by themselves; on
# shutdown they get this long before uvicorn closes them.
GRACEFUL_SHUTDOWN_SECONDS = 2


def console_settings(settings: Settings, host: str, port: int) -> ConsoleSettings:
    """The console's settings for ``voicebot console``: the bot's store (queue,
    sessions, calls), its project (training pages) and its ``console`` section."""
    options = settings.console
    return ConsoleSettings(
        database_url=settings.store_url,
        host=host,
        port=port,
        secure_cookies=options.secure_cookie_choice,
        trusted_proxies=options.trusted_proxies,
        login_failures_allowed=options.login_failures_allowed,
        login_lockout_minutes=options.login_lockout_minutes,
        project=settings,
    )


def _uvicorn_config(settings: ConsoleSettings, log_level: str) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        proxy_headers=False,
        # No websockets here; and Rasa pins a websockets too old for uvicorn's.
        ws="none",
    )


def run_console(settings: ConsoleSettings, log_level: str = "info") -> None:
    """Serves the console until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(_uvicorn_config(settings, log_level)).run()


class ConsoleServer:
    """The console served from a background thread; port 0 picks a free port.

    Use as a context manager, or call ``start`` and ``stop``; ``url`` is the
    address it listens on once started.
    """

    def __init__(self, settings: ConsoleSettings, log_level: str = "warning") -> None:
        self._server = uvicorn.Server(_uvicorn_config(settings, log_level))
        self._thread = threading.Thread(target=self._server.run, name="console", daemon=True)
        self.url = ""

    def start(self, timeout_seconds: float = 30.0) -> str:
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the console server stopped while starting (see its log)")
            if waited >= timeout_seconds:
                raise RuntimeError(f"the console server did not start in {timeout_seconds} s")
            self._thread.join(0.05)
            waited += 0.05
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self, timeout_seconds: float = 15.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_seconds)

    def __enter__(self) -> ConsoleServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
