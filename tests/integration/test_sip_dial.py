"""Calls the bot places (``SipEndpoint.dial``), against sipp as the far end.

sipp plays the PBX or trunk in server mode: a far end that answers (and
echoes RTP), one that is busy or refuses, one that rings until the bot
cancels, one that challenges (407 from a proxy, 401 from the far end) the
extension the bot registers, one that hangs up first. The endpoint runs alone
(``tests/sip_driver.py --dial``) inside the test's private network namespace;
sipp exits 0 only when every message came as its scenario says.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.integration.test_sip_register_transfer import (  # noqa: F401
    ENDPOINT,
    SIPP_DIR,
    Driver,
    driver,
    finished,
)
from tests.netns import NetNamespace, netns  # noqa: F401

FAR_END_PORT = 5310
FAR_END = f"127.0.0.1:{FAR_END_PORT}"
ACCOUNT = f"registrar={FAR_END},user=201,password=secret,keepalive_seconds=0"


def far_end(
    netns: NetNamespace,  # noqa: F811
    scenario: str,
    tmp: Path,
    calls: int = 1,
    keys: Sequence[tuple[str, str]] = (),
    extra: Sequence[str] = (),
) -> subprocess.Popen[str]:
    """sipp as the far end of the bot's calls, taking ``calls`` calls."""
    args = [arg for key, value in keys for arg in ("-key", key, value)]
    proc = netns.popen(
        [
            "sipp",
            "-sf",
            str(SIPP_DIR / scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(FAR_END_PORT),
            "-mp",
            "6310",
            "-rtp_echo",
            "-m",
            str(calls),
            *args,
            *extra,
            "-timeout",
            "30s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(tmp / f"{scenario}.errors.log"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)  # listening before the bot sends anything
    return proc


def dialled(bot: Driver, count: int = 1) -> list[dict]:
    assert bot.wait_for(lambda: len(bot.named("dialled")) >= count, 20), bot.diagnostics()
    return bot.named("dialled")


def hung_up(bot: Driver) -> dict:
    assert bot.wait_for(lambda: bool(bot.named("hung_up")), 20), bot.diagnostics()
    return bot.named("hung_up")[0]


def test_an_answered_call_carries_audio_and_the_bots_bye_ends_it(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = far_end(netns, "uas_answer.xml", tmp_path)
    bot = driver("--dial", "600", "--dial-via", FAR_END, "--hold-seconds", "1")
    result = dialled(bot)[0]
    assert result["outcome"] == "answered", bot.diagnostics()
    assert (result["status"], result["codec"], result["line"]) == (200, "PCMU", 1)
    assert isinstance(result["setup_ms"], int) and result["setup_ms"] >= 0
    ended = hung_up(bot)
    problem = finished(sipp, tmp_path, "uas_answer.xml", timeout=20)
    assert not problem, problem + bot.diagnostics()
    # The session's channel worked both ways: the tone was played out, and
    # sipp echoed the bot's RTP back into the call's frames.
    assert ended["by"] == "bot" and ended["played"] is True
    assert ended["frames"] > 0
    assert ended["rtp"]["sent"] > 0 and ended["rtp"]["received"] > 0, ended
    assert bot.logged("line 1: 600 answered after") == 1
    assert bot.logged("line 1: the bot hangs up") == 1


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("486 Busy Here", "busy"),
        ("603 Decline", "rejected"),
        ("503 Service Unavailable", "failed"),
    ],
)
def test_a_far_end_that_is_busy_or_refuses(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
    status: str,
    outcome: str,
) -> None:
    code, reason = status.split(" ", 1)
    sipp = far_end(netns, "uas_busy.xml", tmp_path, keys=[("status", code)])
    bot = driver("--dial", "600", "--dial-via", FAR_END)
    result = dialled(bot)[0]
    problem = finished(sipp, tmp_path, "uas_busy.xml", timeout=20)
    assert not problem, problem + bot.diagnostics()
    assert (result["outcome"], result["status"], result["reason"]) == (outcome, int(code), reason)
    assert result["line"] is None
    assert bot.named("hung_up") == []


def test_a_call_nobody_answers_is_cancelled_after_the_ring_time(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = far_end(netns, "uas_no_answer.xml", tmp_path)
    bot = driver("--dial", "600", "--dial-via", FAR_END, "--ring-seconds", "1")
    result = dialled(bot)[0]
    problem = finished(sipp, tmp_path, "uas_no_answer.xml", timeout=20)
    assert not problem, problem + bot.diagnostics()
    assert (result["outcome"], result["status"]) == ("no_answer", 487), result
    assert bot.logged("no answer from 600 in 1 s") == 1


def _digest_response(user: str, realm: str, password: str, nonce: str, uri: str) -> str:
    """RFC 2617 Digest without qop, worked out here rather than by the bot."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    return md5(f"{md5(f'{user}:{realm}:{password}')}:{nonce}:{md5(f'INVITE:{uri}')}")


@pytest.mark.parametrize("scenario", ["uas_challenge.xml", "uas_challenge_www.xml"])
def test_a_pbx_that_challenges_the_registered_line_gets_its_credentials(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
    scenario: str,
) -> None:
    expected = _digest_response(
        "201", "voicebot.test", "secret", "trunk-nonce-1", "sip:600@127.0.0.1"
    )
    # Two calls for sipp: the registration (REGISTER, and on stop Expires: 0),
    # and the call the bot places.
    sipp = far_end(netns, scenario, tmp_path, calls=2, keys=[("expected", expected)])
    bot = driver("--account", ACCOUNT, "--dial", "600", "--hold-seconds", "0.5")
    result = dialled(bot)[0]
    assert result["outcome"] == "answered", bot.diagnostics()
    assert hung_up(bot)["by"] == "bot"
    bot.stop()
    problem = finished(sipp, tmp_path, scenario, timeout=20)
    assert not problem, problem + bot.diagnostics()
    assert bot.logged("sip:201@127.0.0.1: unregistered") == 1


def test_a_far_end_that_keys_holds_and_hangs_up_first(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = far_end(netns, "uas_hangs_up.xml", tmp_path, extra=("-d", "500"))
    bot = driver("--dial", "600", "--dial-via", FAR_END, "--hold-seconds", "15")
    result = dialled(bot)[0]
    assert (result["outcome"], result["codec"]) == ("answered", "PCMA"), bot.diagnostics()
    ended = hung_up(bot)
    problem = finished(sipp, tmp_path, "uas_hangs_up.xml", timeout=20)
    assert not problem, problem + bot.diagnostics()
    assert ended["by"] == "caller"
    assert ended["keys"] == ["5"]
    assert bot.logged("line 1: the called party holds") == 1
    assert bot.logged("line 1: the called party hung up") == 1
    assert bot.logged("the bot hangs up") == 0


def test_placed_and_incoming_calls_share_the_lines(
    driver: Callable[..., Driver],  # noqa: F811
    netns: NetNamespace,  # noqa: F811
    tmp_path: Path,
) -> None:
    sipp = far_end(netns, "uas_answer.xml", tmp_path)
    bot = driver(
        "--lines", "1", "--dial", "600", "--dial", "601", "--dial-via", FAR_END,
        "--hold-seconds", "3",
    )  # fmt: skip
    results = {r["number"]: r for r in dialled(bot, 2)}
    # The second call found the only line taken: nothing was sent for it.
    assert results["600"]["outcome"] == "answered", bot.diagnostics()
    assert results["601"]["outcome"] == "no_line"
    assert bot.logged("no free line to call 601: all 1 line(s) busy") == 1
    # A call coming in meanwhile finds the line busy too.
    log = tmp_path / "incoming.log"
    incoming = netns.run(
        [
            "sipp", ENDPOINT, "-sf", str(SIPP_DIR / "busy.xml"), "-i", "127.0.0.1",
            "-p", "5311", "-mp", "6320", "-s", "hotline", "-m", "1",
            "-key", "caller", "+447700900123", "-timeout", "10s", "-timeout_error",
            "-nostdin", "-trace_logs", "-log_file", str(log),
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )  # fmt: skip
    assert incoming.returncode == 0, incoming.stdout[-1500:] + bot.diagnostics()
    assert log.read_text().split()[0] == "BUSY"
    hung_up(bot)
    problem = finished(sipp, tmp_path, "uas_answer.xml", timeout=20)
    assert not problem, problem + bot.diagnostics()


def test_an_address_where_nothing_listens_fails_without_waiting(
    driver: Callable[..., Driver],  # noqa: F811
) -> None:
    bot = driver("--dial", "600", "--dial-via", "127.0.0.1:5399")
    result = dialled(bot)[0]
    # The kernel's ICMP report ends it, not 32 s of retransmissions.
    assert result["outcome"] == "failed", result
    assert result["reason"] == "127.0.0.1:5399 is unreachable"
    assert bot.logged("the call to 600 failed: 127.0.0.1:5399 is unreachable") == 1


def test_with_no_route_dialling_is_a_clear_error(
    driver: Callable[..., Driver],  # noqa: F811
) -> None:
    bot = driver("--dial", "600")
    assert bot.wait_for(lambda: bool(bot.named("dial_error")), 10), bot.diagnostics()
    error = bot.named("dial_error")[0]
    assert error["code"] == "no_outbound"
    assert "telephony.dial_via" in error["message"]
    assert "telephony.accounts" in error["message"]
