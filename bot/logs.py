"""Logging: details to the log file, problems to stderr, nothing to stdout."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from bot.settings import SettingsError

LOG_FORMATS = ("text", "json")
# printf-style placeholders of a log message, to find which argument is which.
_PLACEHOLDER = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[a-zA-Z%]")


def quiet_libraries() -> None:
    """Keeps TensorFlow's and Rasa's start-up chatter out of the terminal."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    os.environ.setdefault("SQLALCHEMY_SILENCE_UBER_WARNING", "1")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning)
    for name in ("tensorflow", "absl", "rasa", "sanic", "asyncio", "urllib3", "matplotlib"):
        logging.getLogger(name).setLevel(logging.WARNING)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger,
    message, the call's id when known, and the exception's traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        call_id = call_id_of(record)
        if call_id is not None:
            entry["call_id"] = call_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def call_id_of(record: logging.LogRecord) -> str | None:
    """The call a record is about: its ``call_id`` (``extra={"call_id": ...}``),
    else the argument of the "call %s" the bot's messages begin with (or
    "... of call %s")."""
    explicit = getattr(record, "call_id", None)
    if explicit is not None:
        return str(explicit)
    message, args = record.msg, record.args
    if not isinstance(message, str) or not isinstance(args, tuple):
        return None
    index = 0
    for match in _PLACEHOLDER.finditer(message):
        if match.group() == "%%":
            continue
        before = message[: match.start()]
        if before == "call " or before.endswith(" of call "):
            return str(args[index]) if index < len(args) else None
        index += 1
    return None


def _formatter(log_format: str, pattern: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else logging.Formatter(pattern)


def setup_logging(
    log_file: Path | None,
    level: str = "INFO",
    verbose: bool = False,
    log_format: str = "text",
) -> None:
    """Problems to stderr (details too when ``verbose``), details to the log
    file; ``log_format`` "json" writes both as one JSON object per line."""
    if log_format not in LOG_FORMATS:
        raise SettingsError(f"logging.format: expected text or json, got {log_format!r}")
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper(), logging.INFO))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.WARNING)
    console.setFormatter(_formatter(log_format, "%(levelname)s %(name)s: %(message)s"))
    root.addHandler(console)
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            root.warning("cannot write the log file %s: %s", log_file, exc)
        else:
            file_handler.setFormatter(
                _formatter(log_format, "%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            root.addHandler(file_handler)
    quiet_libraries()
    logging.getLogger("bot").setLevel(logging.DEBUG if verbose else logging.INFO)
    # Rasa reports failed custom actions at ERROR on this logger; the dialogue listens.
    logging.getLogger("rasa.core.processor").setLevel(logging.ERROR)


def json_stdout() -> TextIO:
    """Keeps stdout for JSON only: anything else written to fd 1 goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out
