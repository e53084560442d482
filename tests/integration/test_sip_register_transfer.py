"""Registered lines and transfers on the bot's SIP endpoint, against sipp.

sipp plays the PBX: a registrar that challenges (401, Digest) and grants a
short expiry, which restarts (the bot must find it again), and a PBX whose
call the bot transfers with REFER (accepted and connected, accepted but
failed, refused). The endpoint runs alone (``tests/sip_driver.py``, no
dialogue) inside the test's private network namespace; sipp exits 0 only
when every message came as its scenario says.
"""

from __future__ import annotations

import json
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

SIPP_DIR = Path(__file__).resolve().parent.parent / "sipp"
ROOT = Path(__file__).resolve().parent.parent.parent
ENDPOINT = "127.0.0.1:5092"
REGISTRAR_PORT = 5300
ACCOUNT = f"registrar=127.0.0.1:{REGISTRAR_PORT},user=201,password=secret,keepalive_seconds=0"


@dataclass
class Driver:
    proc: subprocess.Popen[str]
    events: list[dict] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def wait_for(self, check: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return True
            time.sleep(0.05)
        return check()

    def logged(self, text: str) -> int:
        return sum(text in line for line in self.log)

    def named(self, name: str) -> list[dict]:
        return [e for e in self.events if e["event"] == name]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def diagnostics(self) -> str:
        return "driver log:\n" + "".join(self.log[-60:]) + f"\nevents: {self.events}"


@pytest.fixture
def driver(netns: NetNamespace) -> Iterator[Callable[..., Driver]]:  # noqa: F811
    if not Path("/usr/bin/sipp").exists():
        pytest.skip("sipp is not installed")
    started: list[Driver] = []

    def start(*args: str) -> Driver:
        proc = netns.popen(
            [sys.executable, "-m", "tests.sip_driver", "--listen", ENDPOINT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        running = Driver(proc)
        started.append(running)

        def read_stdout() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                running.events.append(json.loads(line))

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                running.log.append(line)

        threading.Thread(target=read_stdout, daemon=True).start()
        threading.Thread(target=read_stderr, daemon=True).start()
        assert running.wait_for(lambda: bool(running.named("ready")), 20), running.diagnostics()
        return running

    yield start
    for running in started:
        running.stop()


def registrar(
    netns: NetNamespace,  # noqa: F811
    scenario: str,
    tmp: Path,
    expires: int,
    timeout: int = 40,
) -> subprocess.Popen[str]:
    """sipp as the registrar, taking one registration's messages."""
    return netns.popen(
        [
            "sipp",
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(REGISTRAR_PORT),
            "-m",
            "1",
            "-key",
            "expires",
            str(expires),
            "-timeout",
            f"{timeout}s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp / f"{scenario}.errors.log"),
            "-trace_msg",
            "-message_file",
            str(tmp / f"{scenario}.messages.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str], tmp: Path, scenario: str, timeout: float) -> str:
    """Waits for sipp; returns what went wrong ("" when it passed)."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return f"sipp {scenario} did not finish\n{out[-1500:]}{err[-1500:]}"
    if proc.returncode == 0:
        return ""
    errors = tmp / f"{scenario}.errors.log"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    return f"sipp {scenario} exited {proc.returncode}\n{out[-1500:]}{err[-1500:]}\n{text[-3000:]}"


def registers_in(tmp: Path, scenario: str) -> list[str]:
    log = tmp / f"{scenario}.messages.log"
    text = log.read_text(errors="replace") if log.exists() else ""
    return [line for line in text.splitlines() if line.startswith("REGISTER sip:")]


def test_a_line_registers_with_digest_and_refreshes_before_expiry(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = registrar(netns, "registrar.xml", tmp_path, expires=4)
    time.sleep(0.3)
    started = time.monotonic()
    bot = driver("--account", ACCOUNT)
    problem = finished(sipp, tmp_path, "registrar.xml", timeout=30)
    took = time.monotonic() - started
    assert not problem, problem + bot.diagnostics()
    # Challenge, answer, 200; then the refresh (also challenged) within the
    # 4 s granted: half of it, as the refresh rule says.
    assert len(registers_in(tmp_path, "registrar.xml")) == 4
    assert took < 4.0 + 2.0, took
    assert bot.logged("sip:201@127.0.0.1: registered with 127.0.0.1:5300 for 4 s") == 1


def test_a_registrar_that_restarts_gets_the_line_back_and_stop_unregisters(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    first = registrar(netns, "registrar.xml", tmp_path, expires=4)
    time.sleep(0.3)
    bot = driver("--account", ACCOUNT)
    problem = finished(first, tmp_path, "registrar.xml", timeout=30)
    assert not problem, problem + bot.diagnostics()
    # The registrar is gone: the next refresh goes unanswered, said once in the log.
    assert bot.wait_for(
        lambda: bot.logged("registration with 127.0.0.1:5300 failed") > 0, 20
    ), bot.diagnostics()
    # It comes back (a new process, no memory of the line): the bot registers again.
    second = registrar(netns, "registrar_unregister.xml", tmp_path, expires=60)
    assert bot.wait_for(
        lambda: bot.logged("registered with 127.0.0.1:5300 for 60 s") == 1, 40
    ), bot.diagnostics()
    assert bot.logged("registration with 127.0.0.1:5300 failed") == 1
    # Stopping removes the binding: REGISTER with Expires: 0, challenged and answered.
    bot.stop()
    problem = finished(second, tmp_path, "registrar_unregister.xml", timeout=15)
    assert not problem, problem + bot.diagnostics()
    assert bot.logged("sip:201@127.0.0.1: unregistered") == 1, bot.diagnostics()
    assert bot.named("stopped")[0]["registrations"] == [4]


def test_a_wrong_password_is_reported_and_retried(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = registrar(netns, "registrar.xml", tmp_path, expires=4, timeout=6)
    time.sleep(0.3)
    bot = driver("--account", ACCOUNT.replace("password=secret", "password=wrong"))
    assert bot.wait_for(
        lambda: bot.logged("the registrar refused the password for 201") > 0, 15
    ), bot.diagnostics()
    finished(sipp, tmp_path, "registrar.xml", timeout=15)


def _sipp_call(
    netns: NetNamespace,  # noqa: F811
    scenario: str,
    tmp: Path,
    outcome: str = "200 OK",
) -> subprocess.CompletedProcess[str]:
    return netns.run(
        [
            "sipp",
            ENDPOINT,
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            "5301",
            "-mp",
            "6300",
            "-s",
            "hotline",
            "-m",
            "1",
            "-key",
            "caller",
            "+447700900123",
            "-key",
            "outcome",
            outcome,
            "-timeout",
            "20s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp / f"{scenario}.errors.log"),
        ],
        capture_output=True,
        text=True,
        timeout=40,
    )


def _failure(proc: subprocess.CompletedProcess[str], tmp: Path, scenario: str, bot: Driver) -> str:
    errors = tmp / f"{scenario}.errors.log"
    text = errors.read_text(errors="replace") if errors.exists() else ""
    return f"sipp exited {proc.returncode}\n{proc.stdout[-1500:]}\n{text[-3000:]}" + (
        bot.diagnostics()
    )


def test_a_transfer_the_pbx_connects_ends_the_bots_leg(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot = driver("--transfer-to", "600", "--hold-seconds", "10")
    proc = _sipp_call(netns, "refer_accepted.xml", tmp_path)
    assert proc.returncode == 0, _failure(proc, tmp_path, "refer_accepted.xml", bot)
    assert bot.wait_for(lambda: bool(bot.named("transfer")), 5), bot.diagnostics()
    assert bot.named("transfer")[0]["connected"] is True
    assert bot.named("hung_up") == []  # ended by the transfer, not after the hold time
    assert bot.logged("the caller was transferred to sip:600@127.0.0.1") == 1


def test_a_transfer_that_fails_keeps_the_caller(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot = driver("--transfer-to", "600", "--hold-seconds", "1")
    proc = _sipp_call(netns, "refer_accepted.xml", tmp_path, outcome="486 Busy Here")
    assert proc.returncode == 0, _failure(proc, tmp_path, "refer_accepted.xml", bot)
    assert bot.wait_for(lambda: bool(bot.named("hung_up")), 5), bot.diagnostics()
    assert bot.named("transfer")[0]["connected"] is False
    assert bot.logged("the transfer to sip:600@127.0.0.1 did not connect") == 1


def test_a_refused_transfer_keeps_the_caller(
    driver: Callable[..., Driver],
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    bot = driver("--transfer-to", "600", "--hold-seconds", "1")
    proc = _sipp_call(netns, "refer_refused.xml", tmp_path)
    assert proc.returncode == 0, _failure(proc, tmp_path, "refer_refused.xml", bot)
    assert bot.wait_for(lambda: bool(bot.named("hung_up")), 5), bot.diagnostics()
    assert bot.named("transfer")[0]["connected"] is False
    assert bot.logged("was refused (403 Forbidden)") == 1
