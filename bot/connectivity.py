"""Is each database and Redis the settings name reachable? Checked at start.

A command that cannot reach one says so in one line that names the setting,
the address (host:port/database, or the SQLite file; never the password) and
the reason, instead of failing later with a driver's traceback:

    store.url: cannot reach the database at db.internal:5432/voicebot: Connection refused
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from bot.retry import error_reason
from bot.settings import Settings

# How long a check waits for a server that does not answer at all.
CHECK_TIMEOUT_SECONDS = 5.0
_DEFAULT_PORTS = {"postgresql": 5432, "mysql": 3306, "mariadb": 3306, "mssql": 1433}
# A driver's "connection to server at "host", port N failed: <reason>".
_FAILED_MARKER = " failed: "
# redis-py's "Error 111 connecting to host:port. <reason>."
_REDIS_CONNECTING = re.compile(r"^Error \d+ connecting to \S+?\. (.+)$")


class UnreachableError(RuntimeError):
    """A database or Redis named by a setting cannot be reached (or used)."""

    def __init__(self, setting: str, address: str, reason: str, message: str = "") -> None:
        # A file is opened, not reached.
        verb = "open" if address.startswith("the SQLite file") else "reach"
        super().__init__(message or f"{setting}: cannot {verb} {address}: {reason}")
        self.setting = setting
        self.address = address
        self.reason = reason


def _host_port(host: str | None, port: int | None, default_port: int | None) -> str:
    host = host or "localhost"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = port or default_port
    return f"{host}:{port}" if port else host


def database_address(url: str) -> str:
    """``the database at host:port/name``, or ``the SQLite file <path>``."""
    from sqlalchemy.engine import make_url

    parts = make_url(url)
    backend = parts.get_backend_name()
    if backend == "sqlite":
        return f"the SQLite file {parts.database or ':memory:'}"
    where = _host_port(parts.host, parts.port, _DEFAULT_PORTS.get(backend))
    return f"the database at {where}/{parts.database or ''}"


def redis_address(url: str) -> str:
    """``Redis at host:port/db``."""
    parts = urlsplit(url)
    database = parts.path.strip("/")
    return f"Redis at {_host_port(parts.hostname, parts.port, 6379)}" + (
        f"/{database}" if database else ""
    )


def short_reason(exc: BaseException) -> str:
    """What went wrong, without the driver's hints and boilerplate."""
    reason = error_reason(exc)
    if _FAILED_MARKER in reason:  # psycopg2
        reason = reason.rsplit(_FAILED_MARKER, 1)[1]
    if match := _REDIS_CONNECTING.match(reason):
        reason = match.group(1).rstrip(".")
    return reason.removeprefix("FATAL:").strip() or type(exc).__name__


def _bad_url(setting: str, url: str, exc: BaseException) -> UnreachableError:
    # The URL may hold a password: only its scheme is shown.
    scheme = url.split("://", 1)[0] if "://" in url else ""
    address = f"a {scheme}:// URL" if scheme else "a URL without a scheme"
    reason = error_reason(exc).replace(url, "the URL") if url else error_reason(exc)
    return UnreachableError(
        setting, address, reason, f"{setting}: unusable URL ({address}): {reason}"
    )


def check_database(setting: str, url: str, timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Connects once and runs a trivial query; raises ``UnreachableError``."""
    import sqlalchemy as sa

    try:
        parts = sa.engine.make_url(url)
        address = database_address(url)
    except Exception as exc:  # ArgumentError, ValueError: not a URL
        raise _bad_url(setting, url, exc) from exc
    if parts.get_backend_name() == "sqlite":
        _check_sqlite(setting, parts.database or "", address, timeout_seconds)
        return
    connect_args: dict[str, int] = {}
    if parts.get_backend_name() == "postgresql" and "connect_timeout" not in parts.query:
        connect_args["connect_timeout"] = max(1, round(timeout_seconds))
    try:
        engine = sa.create_engine(
            url, future=True, poolclass=sa.pool.NullPool, connect_args=connect_args
        )
    except Exception as exc:  # a driver that is not installed, bad options
        raise _bad_url(setting, url, exc) from exc
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        raise UnreachableError(setting, address, short_reason(exc)) from exc
    finally:
        engine.dispose()


def _check_sqlite(setting: str, database: str, address: str, timeout_seconds: float) -> None:
    if not database or database == ":memory:":
        return
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=timeout_seconds)
        try:
            # Reads the header: a file that is not a database fails here.
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except (OSError, sqlite3.Error) as exc:
        raise UnreachableError(setting, address, short_reason(exc)) from exc


def check_redis(setting: str, url: str, timeout_seconds: float = CHECK_TIMEOUT_SECONDS) -> None:
    """Connects once and pings; raises ``UnreachableError``."""
    import redis  # type: ignore[import-untyped]

    if not url.startswith(("redis://", "rediss://")):
        raise _bad_url(setting, url, ValueError("expected redis://host:port/db"))
    address = redis_address(url)
    try:
        client = redis.Redis.from_url(
            url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
        )
    except Exception as exc:  # a malformed URL
        raise _bad_url(setting, url, exc) from exc
    try:
        client.ping()
    except Exception as exc:
        raise UnreachableError(setting, address, short_reason(exc)) from exc
    finally:
        client.close()


def check_stores(settings: Settings, dialogue: bool) -> None:
    """The call store's (and queue's) database; with ``dialogue``, also Rasa's
    tracker store and lock store when the settings name them."""
    check_database("store.url", settings.store_url)
    if not dialogue:
        return
    if settings.dialogue.tracker_store_url:
        check_database("dialogue.tracker_store_url", settings.dialogue.tracker_store_url)
    if settings.dialogue.lock_store_url:
        check_redis("dialogue.lock_store_url", settings.dialogue.lock_store_url)
