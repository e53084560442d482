"""A bot process's operations listener: ``/metrics``, ``/healthz``, ``/readyz``.

The standard library's threading HTTP server, on a daemon thread of its own:
a scrape or a probe never runs on the calls' event loop, and a slow one
never delays another.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from bot.ops.health import Readiness

log = logging.getLogger(__name__)

PATHS = ("/metrics", "/healthz", "/readyz")


class OperationsError(ValueError):
    """An operations listener that cannot be set up; the message says why."""


def parse_listen(text: str, name: str = "operations.listen") -> tuple[str, int] | None:
    """``HOST:PORT`` (``[::1]:9100`` for IPv6) as a pair; "" is None (no listener)."""
    text = text.strip()
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise OperationsError(f"{name}: expected HOST:PORT such as 127.0.0.1:9100, got {text!r}")
    return host, int(port)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)


class OperationsListener:
    """Serves a registry's metrics and the process's health on ``host:port``
    (port 0 picks a free one; ``url`` says which)."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        readiness: Callable[[], Readiness],
    ) -> None:
        handler = _handler_class(registry, readiness)
        try:
            self._server = _Server((host, port), handler)
        except OSError as exc:
            raise OperationsError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        # Polled every 0.1 s for a shutdown request: closing takes no longer.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.1,), name="operations-http", daemon=True
        )
        bound_host, bound_port = self._server.server_address[:2]
        name = bound_host.decode() if isinstance(bound_host, bytes) else str(bound_host)
        self.url = f"http://[{name}]:{bound_port}" if ":" in name else f"http://{name}:{bound_port}"

    def start(self) -> OperationsListener:
        self._thread.start()
        log.info("operations listener on %s (%s)", self.url, ", ".join(PATHS))
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()


def _handler_class(
    registry: CollectorRegistry, readiness: Callable[[], Readiness]
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "voicebot-operations"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    encode, content_type = choose_encoder(self.headers.get("Accept", ""))
                    self._reply(200, encode(registry), content_type)
                elif path == "/healthz":
                    self._json(200, {"alive": True})
                elif path == "/readyz":
                    report = readiness()
                    self._json(200 if report.ready else 503, report.to_dict())
                else:
                    self._json(404, {"error": f"no such path {path!r}", "paths": list(PATHS)})
            except Exception as exc:  # a broken collector answers 500, the listener lives on
                log.exception("operations listener: %s failed", path)
                self._json(500, {"error": f"{type(exc).__name__}: {exc}"})

        def do_POST(self) -> None:
            self._json(405, {"error": "only GET is served here", "paths": list(PATHS)})

        do_PUT = do_DELETE = do_PATCH = do_POST

        def _json(self, status: int, body: dict[str, Any]) -> None:
            self._reply(status, json.dumps(body).encode() + b"\n", "application/json")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("operations listener: " + format, *args)

    return Handler
