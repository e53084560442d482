"""Bot-process metrics from call events, readiness checks, and the
operations settings: plain values in, Prometheus text out (parsed with
prometheus_client's own parser)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.events import (
    BotSpeechStarted,
    BotTurn,
    CallEnded,
    CallStarted,
    EndReason,
    Escalated,
    TranscriptFinal,
)
from bot.ops import CallMetrics, OperationsError, parse_listen, run_checks
from bot.settings import SettingsError, load_settings


def samples(metrics: CallMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry).decode()
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_events_of_two_calls_move_the_counters_and_histograms() -> None:
    model = ["dialogue-aaa"]
    metrics = CallMetrics(lambda: model[0], process=False)
    events = [
        CallStarted("c1", 0, "phone"),
        CallStarted("c2", 0, "text"),
        BotSpeechStarted("c1", 50, "hello", None, {"tts_first_chunk_ms": 80.0}),
        TranscriptFinal("c1", 3000, "where is my order", 0.9, turn_id=1),
        BotTurn(
            "c1",
            3400,
            user="where is my order",
            intent="order_status",
            timings={"endpoint_ms": 500.0, "asr_final_ms": 120.0, "dialogue_ms": 180.0},
            turn_id=1,
        ),
        BotSpeechStarted("c1", 3600, "what is the number", 1100, {"tts_first_chunk_ms": 90.0}),
        BotTurn("c1", 5000, user="mumble", intent="unclear_speech", unclear=True, turn_id=2),
        BotTurn("c2", 10, user="a person", intent="request_human", timings={"dialogue_ms": 40.0}),
        Escalated("c2", 11, "explicit_request"),
        BotTurn("c2", 20, user="hello?", intent="on_hold", turn_id=2),
        CallEnded("c2", 30, EndReason.TRANSFERRED),
    ]
    for event in events:
        metrics.listener(event)
    found = samples(metrics)
    assert found[("voicebot_calls_in_progress", (("channel", "phone"),))] == 1
    assert found[("voicebot_calls_in_progress", (("channel", "text"),))] == 0
    assert found[("voicebot_calls_in_progress", (("channel", "soundcard"),))] == 0
    assert found[("voicebot_calls_total", (("channel", "text"), ("reason", "transferred")))] == 1
    turns = {
        dict(labels)["kind"] + "/" + dict(labels)["channel"]: value
        for (name, labels), value in found.items()
        if name == "voicebot_turns_total"
    }
    assert turns == {"answered/phone": 1, "unclear/phone": 1, "answered/text": 1, "on_hold/text": 1}
    stage = "voicebot_turn_stage_seconds"
    assert found[(f"{stage}_count", (("stage", "dialogue"),))] == 2
    assert found[(f"{stage}_sum", (("stage", "dialogue"),))] == pytest.approx(0.22)
    assert found[(f"{stage}_count", (("stage", "asr_final"),))] == 1
    assert found[(f"{stage}_count", (("stage", "tts_first_chunk"),))] == 2
    # First audio only for answers (the greeting has no caller speech before it).
    assert found[("voicebot_first_audio_seconds_count", ())] == 1
    assert found[("voicebot_first_audio_seconds_bucket", (("le", "1.0"),))] == 0
    assert found[("voicebot_first_audio_seconds_bucket", (("le", "1.5"),))] == 1
    assert found[("voicebot_escalations_total", (("reason", "explicit_request"),))] == 1
    assert found[("voicebot_model_info", (("model", "dialogue-aaa"),))] == 1

    # A newly deployed model shows at the next scrape; the phone call ends.
    model[0] = "dialogue-bbb"
    metrics.listener(CallEnded("c1", 9000, EndReason.BOT_HANG_UP))
    found = samples(metrics)
    assert ("voicebot_model_info", (("model", "dialogue-aaa"),)) not in found
    assert found[("voicebot_model_info", (("model", "dialogue-bbb"),))] == 1
    assert found[("voicebot_calls_in_progress", (("channel", "phone"),))] == 0
    assert found[("voicebot_calls_total", (("channel", "phone"), ("reason", "bot_hang_up")))] == 1


def test_a_call_ended_without_its_start_counts_under_an_unknown_channel() -> None:
    metrics = CallMetrics(lambda: None, process=False)
    metrics.listener(CallEnded("lost", 5, EndReason.ERROR, error="asr"))
    found = samples(metrics)
    assert found[("voicebot_calls_total", (("channel", "unknown"), ("reason", "error")))] == 1
    assert not any(name == "voicebot_model_info" for name, _ in found)


def test_process_metrics_carry_the_voicebot_prefix() -> None:
    names = {name for name, _ in samples(CallMetrics(lambda: None))}
    assert "voicebot_process_cpu_seconds_total" in names
    assert all(name.startswith("voicebot_") for name in names)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:9100", ("::1", 9100)),
        ("  ", None),
        ("", None),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int] | None) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9100", "localhost", ":9100", "host:http", "host:70000"])
def test_bad_listen_addresses_are_refused_by_name(text: str) -> None:
    with pytest.raises(OperationsError, match="--metrics-listen: expected HOST:PORT"):
        parse_listen(text, "--metrics-listen")


def test_readiness_names_what_is_not_ready_and_survives_failing_and_hung_checks() -> None:
    release = threading.Event()

    def broken() -> str | None:
        raise ConnectionRefusedError("connection refused")

    def hung() -> str | None:
        release.wait()
        return None

    try:
        report = run_checks(
            {"ok": lambda: None, "down": lambda: "not loaded", "broken": broken, "hung": hung},
            timeout_seconds=0.2,
        )
    finally:
        release.set()
    assert not report.ready
    assert report.not_ready == {
        "down": "not loaded",
        "broken": "ConnectionRefusedError: connection refused",
        "hung": "no answer in time",
    }
    assert report.to_dict()["checks"]["ok"] == "ok"
    assert run_checks({"ok": lambda: None}).ready


def test_operations_and_log_format_settings(tmp_path: Path) -> None:
    (tmp_path / "domain.yml").write_text('version: "3.1"\n')
    settings = load_settings(tmp_path, env={})
    assert settings.operations.listen == "" and settings.logging.format == "text"
    env = {"VOICEBOT_OPERATIONS_LISTEN": "127.0.0.1:9100", "VOICEBOT_LOGGING_FORMAT": "json"}
    settings = load_settings(tmp_path, env=env)
    assert settings.operations.listen == "127.0.0.1:9100" and settings.logging.format == "json"
    with pytest.raises(SettingsError, match="logging.format: expected text or json, got 'xml'"):
        load_settings(tmp_path, env={"VOICEBOT_LOGGING_FORMAT": "xml"})
    with pytest.raises(SettingsError, match="operations.listen: expected HOST:PORT"):
        load_settings(tmp_path, env={"VOICEBOT_OPERATIONS_LISTEN": "9100"})
