"""JSON log lines: one object per record, each parsed back with json."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.logs import JsonFormatter, setup_logging
from bot.settings import SettingsError


def logger_to(stream: io.StringIO) -> logging.Logger:
    logger = logging.getLogger(f"bot.test_json.{id(stream)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger.addHandler(handler)
    return logger


def test_each_record_is_one_json_object_with_the_call_id_when_known() -> None:
    stream = io.StringIO()
    log = logger_to(stream)
    log.warning("call %s: goodbye before more words dropped: %s", "abc123", ["bye\nnow"])
    log.info("recording %s of call %s is outside %s: left alone", "r.wav", "def456", "/var")
    log.info("no free line to call %s: %s", "+441632960000", "busy")
    log.info("queue changed", extra={"call_id": "ghi789"})
    try:
        raise ValueError("the backend said no")
    except ValueError:
        log.exception("call %s failed: %s", "jkl012", "boom")

    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 5
    first = records[0]
    assert set(first) == {"time", "level", "logger", "message", "call_id"}
    assert first["level"] == "WARNING" and first["logger"] == log.name
    assert first["message"] == "call abc123: goodbye before more words dropped: ['bye\\nnow']"
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert [r.get("call_id") for r in records] == ["abc123", "def456", None, "ghi789", "jkl012"]
    failed = records[4]
    assert failed["level"] == "ERROR"
    assert "Traceback" in failed["exception"]
    assert "ValueError: the backend said no" in failed["exception"]


@pytest.fixture
def restored_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    bot_level = logging.getLogger("bot").level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("bot").setLevel(bot_level)


def test_setup_logging_writes_json_lines_to_the_log_file(
    tmp_path: Path, restored_logging: None
) -> None:
    log_file = tmp_path / "log" / "voicebot.log"
    setup_logging(log_file, "INFO", log_format="json")
    logging.getLogger("bot.call").info("call %s: queued", "c-1")
    logging.getLogger("bot.call").debug("below the level: not written")
    for handler in logging.getLogger().handlers:
        handler.flush()
    records = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert [(r["logger"], r["message"], r["call_id"]) for r in records] == [
        ("bot.call", "call c-1: queued", "c-1")
    ]


def test_an_unknown_log_format_is_refused(tmp_path: Path, restored_logging: None) -> None:
    with pytest.raises(SettingsError, match="expected text or json, got 'yaml'"):
        setup_logging(tmp_path / "x.log", log_format="yaml")
