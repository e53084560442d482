"""A real SIP phone for end-to-end tests: baresip driven over ctrl_tcp.

``BaresipCaller`` writes a private baresip config directory, runs
``baresip -f DIR`` inside a test network namespace (see tests/netns.py) and
talks to it through the ctrl_tcp module's netstring JSON protocol: commands
``{"command": ..., "params": ..., "token": ...}`` answered by
``{"response": true, "ok": ..., "data": ..., "token": ...}``, and events
``{"event": true, "class": "call", "type": "CALL_ESTABLISHED", ...}``.

What the caller says comes from a WAV file (aufile audio source; 8 kHz mono
16-bit, as G.711 wants). What the caller hears is recorded by the sndfile
audio filter, which dumps decoded RTP to ``dump-<time>-dec.wav`` files in
the recordings directory (baresip 1.0's aufile has no player). Keys go out as
RFC 4733 telephone events with the menu's ``sndcode`` command.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

from tests.netns import ADDRESS, NetNamespace

MODULE_PATH = "/usr/lib/baresip/modules"

# Runs inside the namespace: connect to ctrl_tcp (retrying until the deadline),
# then copy bytes both ways between it and an inherited socket.
_RELAY = """
import os, socket, sys, threading, time
port, fd, deadline = int(sys.argv[1]), int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while True:
    try:
        ctrl = socket.create_connection(("127.0.0.1", port), 1)
        ctrl.settimeout(None)
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(1)
        time.sleep(0.05)
pipe = socket.socket(fileno=fd)
print("connected", flush=True)
def pump(src, dst):
    while True:
        data = src.recv(65536)
        if not data:
            os._exit(0)
        dst.sendall(data)
threading.Thread(target=pump, args=(pipe, ctrl), daemon=True).start()
pump(ctrl, pipe)
"""
RATE = 8000


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_source_wav(path: Path, samples: np.ndarray) -> Path:
    """An 8 kHz mono S16LE WAV, the only kind baresip's aufile plays to G.711."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


def silence_wav(path: Path, seconds: float = 120.0) -> Path:
    return write_source_wav(path, np.zeros(int(RATE * seconds), dtype="<i2"))


class BaresipCaller:
    """One baresip user agent with one account, calling from a test netns."""

    def __init__(
        self,
        netns: NetNamespace,
        workdir: Path,
        source_wav: Path,
        *,
        number: str = "+447700900123",
        sip_port: int = 5070,
    ) -> None:
        self.netns = netns
        self.workdir = Path(workdir)
        self.source_wav = Path(source_wav)
        self.number = number
        self.sip_port = sip_port
        self.ctrl_port = free_tcp_port()
        self.config_dir = self.workdir / "baresip"
        self.recordings = self.workdir / "heard"
        self.log_path = self.workdir / "baresip.log"
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._log: Any = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._tokens = 0

    # -- setup -----------------------------------------------------------------

    def write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.recordings.mkdir(parents=True, exist_ok=True)
        # baresip 1.0's aufile has no player: "audio_player aufile" leaves the
        # receive pipeline without one ("(play)"), which is fine, as sndfile
        # records decoded audio before it would be played.
        config = f"""\
poll_method\t\tepoll
sip_listen\t\t{ADDRESS}:{self.sip_port}
call_local_timeout\t120
call_max_calls\t\t4
audio_source\t\taufile,{self.source_wav}
audio_player\t\taufile,/dev/null
audio_alert\t\taufile,/dev/null
audio_level\t\tno
ausrc_format\t\ts16
auplay_format\t\ts16
auenc_format\t\ts16
audec_format\t\ts16
rtp_tos\t\t\t0
rtp_ports\t\t{20000 + self.sip_port % 1000 * 20}-{20000 + self.sip_port % 1000 * 20 + 19}
rtp_timeout\t\t0
dns_server\t\t127.0.0.1:53
net_interface\t\tvb0
module_path\t\t{MODULE_PATH}
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\tsndfile.so
module_app\t\taccount.so
module_app\t\tmenu.so
module_app\t\tctrl_tcp.so
ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}
snd_path\t\t{self.recordings}
"""
        (self.config_dir / "config").write_text(config)
        account = f"<sip:{self.number}@{ADDRESS}:{self.sip_port}>;regint=0;audio_codecs=PCMU,PCMA\n"
        (self.config_dir / "accounts").write_text(account)
        (self.config_dir / "contacts").write_text("")

    def start(self, timeout: float = 20.0) -> None:
        """Runs baresip in the namespace; returns once ctrl_tcp is connected."""
        self.write_config()
        self._log = self.log_path.open("wb")
        self._proc = self.netns.popen(
            ["baresip", "-f", str(self.config_dir)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        self._sock = self._connect(timeout)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _connect(self, timeout: float) -> socket.socket:
        """A socket to ctrl_tcp, which listens on the namespace's own loopback.

        A process can't open sockets in another network namespace, so a
        small relay runs inside it (under nsenter) and pumps bytes between
        ctrl_tcp and one end of a socket pair; it prints "connected" once
        ctrl_tcp accepted it."""
        ours, theirs = socket.socketpair()
        self._relay = self.netns.popen(
            [sys.executable, "-c", _RELAY, str(self.ctrl_port), str(theirs.fileno()), str(timeout)],
            pass_fds=(theirs.fileno(),),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        theirs.close()
        assert self._relay.stdout is not None
        ready, _, _ = select.select([self._relay.stdout], [], [], timeout + 5)
        line = self._relay.stdout.readline() if ready else b""
        if line.strip() != b"connected":
            ours.close()
            assert self._proc is not None
            state = "exited" if self._proc.poll() is not None else "running"
            raise RuntimeError(f"baresip ctrl_tcp unreachable (baresip {state}): {self.log()}")
        return ours

    # -- protocol --------------------------------------------------------------

    def _read(self) -> None:
        assert self._sock is not None
        buf = b""
        while True:
            try:
                data = self._sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while True:
                head, colon, rest = buf.partition(b":")
                if not colon or not head.isdigit():
                    break
                size = int(head)
                if len(rest) < size + 1:
                    break
                payload, buf = rest[:size], rest[size + 1 :]
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                message["_at"] = time.monotonic()
                with self._cond:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    else:
                        self.events.append(message)
                    self._cond.notify_all()

    def command(self, command: str, params: str = "", timeout: float = 10.0) -> dict[str, Any]:
        assert self._sock is not None, "start() first"
        self._tokens += 1
        token = f"t{self._tokens}"
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
        with self._cond:
            if not self._cond.wait_for(lambda: token in self._responses, timeout):
                raise TimeoutError(f"baresip did not answer {command!r}: {self.log()}")
            return self._responses.pop(token)

    def wait_event(self, type_: str, timeout: float = 30.0, after: int = 0) -> dict[str, Any]:
        """The first event of this type (from index ``after`` of ``events``)."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events[after:] if e.get("type") == type_), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                seen = [e.get("type") for e in self.events]
                raise TimeoutError(f"no {type_} within {timeout} s; events {seen}: {self.log()}")
            event = found()
            assert event is not None
            return event

    # -- phone actions ---------------------------------------------------------

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def send_keys(self, keys: str, gap: float = 0.3) -> None:
        """Each key as one RFC 4733 event: pressed, then released."""
        for key in keys:
            reply = self.command("sndcode", key)
            assert reply.get("ok"), reply
            time.sleep(gap)

    def hang_up(self) -> dict[str, Any]:
        return self.command("hangup")

    def received_wavs(self) -> list[Path]:
        return sorted(self.recordings.glob("*-dec.wav"))

    def received_wav(self) -> Path:
        """What the caller heard (the last decode dump; one per call)."""
        files = self.received_wavs()
        assert files, f"sndfile recorded nothing in {self.recordings}: {self.log()}"
        return files[-1]

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError, TimeoutError):
                self.command("quit", timeout=2)
            self._sock.close()
            self._sock = None
        if self._relay is not None:
            if self._relay.poll() is None:
                self._relay.kill()
            self._relay.wait()
            self._relay = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None
