"""Starts and supervises the rasa_sdk action server that runs ``actions/``.

The dialogue reaches custom actions over HTTP, as in every Rasa deployment.
The voicebot runs its own action server on a free local port and restarts it
when it dies, so a crashed action costs one turn, not the call.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class ActionServerError(RuntimeError):
    """The action server could not be started."""


def _die_with_parent() -> None:
    """In the child: ask Linux to end it when the bot process dies, even by
    SIGKILL, so no orphaned action server keeps a port (no-op elsewhere)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_ok(base_url: str, timeout_seconds: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=timeout_seconds) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class ActionServer:
    """One supervised ``python -m rasa_sdk`` process."""

    def __init__(
        self,
        project_dir: Path,
        backend_database: Path,
        log_file: Path,
        start_timeout_seconds: float = 60.0,
    ) -> None:
        self._project_dir = project_dir
        self._backend_database = backend_database
        self._log_file = log_file
        self._start_timeout_seconds = start_timeout_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self.port = 0
        self.restarts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/webhook"

    def start(self) -> None:
        if self._process is None:
            self.port = free_port()
        self._launch()

    def _launch(self) -> None:
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        if self._log_handle is None:
            # Kept open across restarts of the server; closed in stop().
            self._log_handle = open(self._log_file, "ab")  # noqa: SIM115
        env = {
            **os.environ,
            "VOICEBOT_BACKEND_DB": str(self._backend_database),
            # rasa_sdk listens on every interface unless told otherwise.
            "SANIC_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "rasa_sdk", "--actions", "actions",
            "--port", str(self.port),
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            cwd=self._project_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_handle,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + self._start_timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ActionServerError(
                    f"the action server exited with code {self._process.returncode} "
                    f"while starting; see {self._log_file}"
                )
            if health_ok(self.base_url, timeout_seconds=0.5):
                log.info("action server up on port %d (pid %d)", self.port, self._process.pid)
                return
            time.sleep(0.1)
        self.stop()
        raise ActionServerError(
            f"the action server did not answer within {self._start_timeout_seconds:.0f} s; "
            f"see {self._log_file}"
        )

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def ensure_running(self) -> bool:
        """Restarts a dead server on the same port; True when it had died."""
        if self.alive():
            return False
        log.error("the action server died; restarting it (see %s)", self._log_file)
        self.restarts += 1
        self._launch()
        return True

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None
