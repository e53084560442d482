"""A private PulseAudio server for tests: null sinks stand in for phone lines.

`PulseServer` starts `pulseaudio` (as root too) with its own socket, runtime
directory and configuration in a temporary directory, loads one null sink per
line, and writes an ALSA configuration in which every line is also an ALSA
device of the same name: playing to it goes to the sink, capturing from it
reads the sink's monitor. While the server runs, the test process's
environment points PulseAudio clients (``PULSE_SERVER``) and ALSA
(``ALSA_CONFIG_PATH``) at it, so PortAudio, and so sounddevice, list the lines
as devices once PortAudio scans again (``bot.soundcard.rescan_devices()``).

Register the fixture in a conftest or a test module with
``pulse_server = pulse_server_fixture(on_change=bot.soundcard.rescan_devices)``.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import wave
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import pytest

DEFAULT_SINK_NAMES = ("caller_line", "bot_line")
_MISSING_TOOLS_HINT = "apt-get install pulseaudio pulseaudio-utils libasound2-plugins"


class PulseServerError(RuntimeError):
    """The test PulseAudio server could not be started or used."""


@dataclass(frozen=True)
class RecordedAudio:
    """Mono int16 audio captured from a source, with when each chunk arrived.

    ``chunk_arrivals`` pairs the index of a chunk's first sample with the
    ``time.monotonic()`` at which the chunk reached the test process (so the
    sample was captured at most the recording latency before that)."""

    samples: np.ndarray
    rate_hz: int
    chunk_arrivals: tuple[tuple[int, float], ...]

    def arrival_time(self, sample_index: int) -> float:
        """Monotonic time at which the chunk holding ``sample_index`` arrived."""
        for first_sample, arrived in self.chunk_arrivals:
            if first_sample > sample_index:
                return arrived
        return self.chunk_arrivals[-1][1] if self.chunk_arrivals else float("nan")

    def wav_bytes(self) -> bytes:
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.rate_hz)
            wav.writeframes(self.samples.astype("<i2").tobytes())
        return buffer.getvalue()


class Recording:
    """A running `parec` capture of one source; `stop()` returns what it heard."""

    def __init__(self, process: subprocess.Popen[bytes], rate_hz: int) -> None:
        self._process = process
        self._rate_hz = rate_hz
        self._chunks: list[bytes] = []
        self._arrivals: list[tuple[int, float]] = []
        self._reader = threading.Thread(target=self._read, name="parec-reader", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        received_samples = 0
        while True:
            chunk = self._process.stdout.read1(4096)  # type: ignore[attr-defined]
            if not chunk:
                return
            self._arrivals.append((received_samples, time.monotonic()))
            self._chunks.append(chunk)
            received_samples += len(chunk) // 2

    def samples_so_far(self) -> np.ndarray:
        data = b"".join(list(self._chunks))
        return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")

    def stop(self) -> RecordedAudio:
        self._process.terminate()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._reader.join(timeout=5)
        data = b"".join(self._chunks)
        samples = np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2").copy()
        return RecordedAudio(samples, self._rate_hz, tuple(self._arrivals))


class PulseServer:
    """A PulseAudio daemon of the test's own, with a null sink per line name."""

    def __init__(
        self,
        sink_names: Sequence[str] = DEFAULT_SINK_NAMES,
        start_timeout_seconds: float = 15.0,
    ) -> None:
        self.sink_names = tuple(sink_names)
        self.start_timeout_seconds = start_timeout_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._saved_env: dict[str, str | None] = {}
        # Unix socket paths are limited to about 100 bytes: keep the directory short.
        self.directory = Path(tempfile.gettempdir()) / f"pulse-{uuid.uuid4().hex[:12]}"
        self.socket_path = self.directory / "native"
        self.alsa_config_path = self.directory / "alsa.conf"
        self.log_path = self.directory / "pulseaudio.log"
        self._alsa_devices: list[str] = []
        self._keep_alive: list[subprocess.Popen[bytes]] = []
        self._zeros: BinaryIO | None = None

    @property
    def server_address(self) -> str:
        return f"unix:{self.socket_path}"

    def client_env(self) -> dict[str, str]:
        """Variables that send PulseAudio and ALSA clients to this server."""
        return {
            "PULSE_SERVER": self.server_address,
            # Else libpulse keeps a cookie and a runtime link in the user's home.
            "PULSE_RUNTIME_PATH": str(self.directory / "runtime"),
            "PULSE_COOKIE": str(self.directory / "cookie"),
            "ALSA_CONFIG_PATH": str(self.alsa_config_path),
        }

    def _tool_env(self) -> dict[str, str]:
        return {**os.environ, **self.client_env()}

    def start(self) -> None:
        for tool in ("pulseaudio", "pactl", "pacat", "paplay", "parec"):
            if shutil.which(tool) is None:
                raise PulseServerError(f"{tool} is not installed: {_MISSING_TOOLS_HINT}")
        self.directory.mkdir(mode=0o700)
        self._zeros = open("/dev/zero", "rb")  # noqa: SIM115 (closed in stop())
        try:
            self._launch()
        except BaseException:
            self.stop()
            raise
        self._apply_env()

    def _launch(self) -> None:
        script = self.directory / "default.pa"
        lines = [
            f"load-module module-native-protocol-unix auth-anonymous=1 socket={self.socket_path}",
            *(f"load-module module-null-sink sink_name={name}" for name in self.sink_names),
        ]
        script.write_text("\n".join(lines) + "\n", encoding="utf-8")
        runtime = self.directory / "runtime"
        runtime.mkdir()
        daemon_env = {
            **os.environ,
            "HOME": str(self.directory),
            "XDG_RUNTIME_DIR": str(runtime),
            "PULSE_RUNTIME_PATH": str(runtime),
            "PULSE_STATE_PATH": str(self.directory / "state"),
        }
        daemon_env.pop("PULSE_SERVER", None)
        # As root, pulseaudio only warns when started without --system; -n skips
        # the machine's default.pa so only our socket and sinks exist.
        command = [
            "pulseaudio",
            "--daemonize=no",
            "--system=false",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--realtime=no",
            "--high-priority=no",
            "-n",
            "-F",
            str(script),
            f"--log-target=newfile:{self.log_path}",
        ]
        self._process = subprocess.Popen(
            command,
            env=daemon_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_answering()
        for name in self.sink_names:
            self._add_alsa_device(name)
            self._keep_running(name)

    def _keep_running(self, sink_name: str) -> None:
        """Plays silence into the sink for as long as the server runs.

        An idle null sink renders in two-second steps, so a stream that starts
        on it (or on its monitor) waits up to two seconds for its first audio.
        A sound card runs on its clock all the time; with a low-latency stream
        attached the null sink does too, once its current step is over."""
        self._keep_alive.append(
            subprocess.Popen(
                ["pacat", "--playback", "--raw", "--latency-msec=10", "--device", sink_name],
                env=self._tool_env(),
                stdin=self._zeros,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        probe = self.start_recording(f"{sink_name}.monitor")
        deadline = time.monotonic() + self.start_timeout_seconds
        while probe.samples_so_far().size == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if probe.stop().samples.size == 0:
            raise PulseServerError(f"the null sink {sink_name} gives no audio")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.start_timeout_seconds
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PulseServerError(f"pulseaudio exited at start:\n{self._log_tail()}")
            if self.socket_path.exists():
                answer = self._pactl("info", check=False)
                if answer.returncode == 0:
                    return
            time.sleep(0.05)
        raise PulseServerError(f"pulseaudio did not answer in time:\n{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"

    def _add_alsa_device(self, sink_name: str) -> None:
        self._alsa_devices.append(
            f"pcm.{sink_name} {{\n"
            "  type asym\n"
            f'  playback.pcm {{ type pulse device "{sink_name}" }}\n'
            f'  capture.pcm {{ type pulse device "{sink_name}.monitor" }}\n'
            f'  hint {{ show on description "null sink {sink_name}" }}\n'
            "}\n"
        )
        # The machine's own ALSA configuration first, then the lines.
        self.alsa_config_path.write_text(
            "</usr/share/alsa/alsa.conf>\n" + "".join(self._alsa_devices), encoding="utf-8"
        )

    def _apply_env(self) -> None:
        for key, value in self.client_env().items():
            self._saved_env.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    def _pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pactl", "--server", self.server_address, *args],
            env=self._tool_env(),
            capture_output=True,
            text=True,
            timeout=10,
        )
        if check and result.returncode != 0:
            raise PulseServerError(f"pactl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def load_null_sink(self, name: str) -> int:
        """Adds a null sink (and an ALSA device of that name); returns its module id."""
        answer = self._pactl("load-module", "module-null-sink", f"sink_name={name}")
        self._add_alsa_device(name)
        self._keep_running(name)
        return int(answer.stdout.strip())

    def module_id(self, sink_name: str) -> int:
        """The id of the module that made the null sink ``sink_name``."""
        for line in self._pactl("list", "short", "modules").stdout.splitlines():
            fields = line.split("\t")
            if len(fields) > 2 and f"sink_name={sink_name}" in fields[2].split():
                return int(fields[0])
        raise PulseServerError(f"no null sink named {sink_name}")

    def unload(self, module_id: int) -> None:
        self._pactl("unload-module", str(module_id))

    def freeze(self) -> None:
        """Stops the daemon (SIGSTOP) without closing anything, like a hung device."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def play_wav(self, sink: str, path: Path) -> None:
        """Plays a WAV file into a sink and returns when it has been played."""
        subprocess.run(
            ["paplay", "--server", self.server_address, "--device", sink, str(path)],
            env=self._tool_env(),
            check=True,
            capture_output=True,
            timeout=120,
        )

    def start_recording(self, source: str, rate_hz: int = 48_000) -> Recording:
        """Starts capturing ``source`` (e.g. ``bot_line.monitor``) as mono int16."""
        process = subprocess.Popen(
            [
                "parec",
                "--server",
                self.server_address,
                "--device",
                source,
                "--raw",
                "--format=s16le",
                f"--rate={rate_hz}",
                "--channels=1",
                "--latency-msec=10",
            ],
            env=self._tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        return Recording(process, rate_hz)

    def record(self, source: str, seconds: float, rate_hz: int = 48_000) -> bytes:
        """Records ``seconds`` of ``source`` and returns it as mono 16-bit WAV bytes."""
        recording = self.start_recording(source, rate_hz)
        time.sleep(seconds)
        return recording.stop().wav_bytes()

    def stop(self) -> None:
        self._restore_env()
        for player in self._keep_alive:
            player.terminate()
            player.wait(timeout=10)
        self._keep_alive.clear()
        if self._zeros is not None:
            self._zeros.close()
            self._zeros = None
        if self._process is not None and self._process.poll() is None:
            self.thaw()
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PulseServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def pulse_server_fixture(
    sink_names: Sequence[str] = DEFAULT_SINK_NAMES,
    scope: str = "module",
    on_change: Callable[[], object] | None = None,
) -> Callable[[], Iterator[PulseServer]]:
    """A pytest fixture that runs a `PulseServer` with the given lines.

    ``on_change`` runs once the server is up and again once it is gone (and the
    environment restored): pass ``bot.soundcard.rescan_devices`` so PortAudio
    lists the lines while they exist and forgets them afterwards."""

    @pytest.fixture(scope=scope)  # type: ignore[call-overload]
    def pulse_server() -> Iterator[PulseServer]:
        with PulseServer(sink_names) as server:
            if on_change is not None:
                on_change()
            yield server
        if on_change is not None:
            on_change()

    return pulse_server
