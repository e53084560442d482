"""Speech output: text to 16 kHz mono PCM with espeak-ng through pyttsx3.

pyttsx3 breaks when driven from several threads ("run loop already started"), so each
Synthesiser owns one thread that makes its engine calls; callers queue jobs to it and
wait (or await). espeak-ng holds one state per process (voice, rate, volume, callback)
and pyttsx3 shares one engine per process, so renders of all Synthesisers take turns
under one lock and set their own voice, rate and volume each time.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
import wave
from collections import OrderedDict
from collections.abc import AsyncGenerator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bot.pcm import SAMPLE_RATE_HZ, to_mono_16k
from bot.speech.sentences import split_sentences

__all__ = ["Synthesiser", "TtsError", "TtsSettings", "list_voices", "split_sentences"]

log = logging.getLogger(__name__)

INSTALL_HINT = "apt-get install espeak-ng libespeak-ng1"
# Changes whenever rendering changes what bytes a text gives, so old disk entries are not reused.
_CACHE_FORMAT = "pcm16k-mono-s16le-v1"
_RENDER_ATTEMPTS = 2
# espeak-ng speaks at about 0.8 of the nominal words-per-minute; a render shorter than
# this fraction of the nominal duration has lost audio.
_MIN_DURATION_FRACTION = 0.3
_MIN_DURATION_SECONDS = 0.1
# Samples this close to zero count as digital silence when trimming.
_SILENCE_LEVEL = 8
_RENDER_TIMEOUT_SECONDS = 20.0
_IDLE_POLL_SECONDS = 0.0005
_ESPEAK_LOCK = threading.Lock()


class TtsError(RuntimeError):
    """Speech output failed. Codes: engine_missing, unknown_voice, render_failed, not_running,
    invalid_settings, cache_unusable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class TtsSettings:
    voice: str = "en-us"  # an espeak-ng voice id ("gmw/en-us"), its last part, or its name
    rate_wpm: int = 175
    volume: float = 1.0  # 0..1
    cache_dir: Path | None = None
    cache_entries: int = 256  # in-memory LRU size; 0 turns it off
    keep_silence_ms: int = 30  # silence kept before and after the speech

    def __post_init__(self) -> None:
        if not 80 <= self.rate_wpm <= 450:
            raise TtsError("invalid_settings", f"rate_wpm must be 80..450, not {self.rate_wpm}")
        if not 0.0 <= self.volume <= 1.0:
            raise TtsError("invalid_settings", f"volume must be 0..1, not {self.volume}")
        if self.cache_entries < 0 or self.keep_silence_ms < 0:
            raise TtsError("invalid_settings", "cache_entries and keep_silence_ms must be >= 0")


# Words to render and where to deliver the PCM; None tells the engine thread to stop.
_Job = tuple[str, Future[bytes]]


class Synthesiser:
    """Renders text to 16 kHz mono int16 PCM on its own engine thread, with caches."""

    def __init__(self, settings: TtsSettings) -> None:
        self.settings = settings
        self.render_count = 0  # pyttsx3 renders done (cache hits do not count)
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._memory_lock = threading.Lock()
        self._voice_id = ""

    def __enter__(self) -> Synthesiser:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def voice_id(self) -> str:
        """The espeak-ng id of the voice in use (known after start)."""
        return self._voice_id

    def start(self) -> None:
        """Starts the engine thread; raises TtsError if espeak-ng or the voice is missing."""
        with self._state_lock:
            if self._thread is not None:
                return
            ready: Future[None] = Future()
            thread = threading.Thread(
                target=self._run_engine, args=(ready,), name="tts-engine", daemon=True
            )
            thread.start()
            try:
                ready.result()
            except BaseException:
                thread.join()
                raise
            self._thread = thread

    def close(self) -> None:
        """Stops the engine thread once the jobs already queued are done."""
        with self._state_lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._jobs.put(None)
        thread.join()

    def synthesise(self, text: str) -> bytes:
        """PCM for `text` (b"" if there is nothing to say). Blocks; safe from any thread."""
        return self._request(text).result()

    async def synthesise_async(self, text: str) -> bytes:
        """PCM for `text`, awaited without blocking the event loop."""
        return await asyncio.wrap_future(self._request(text))

    def prepare(self, text: str) -> None:
        """Renders the first piece of ``text`` ahead, into the caches, so that
        speaking it later starts at once; returns without waiting."""
        pieces = split_sentences(text)
        if pieces:
            self._request(pieces[0])

    async def stream(self, text: str) -> AsyncGenerator[bytes, None]:
        """PCM piece by piece (see split_sentences); the next piece renders meanwhile."""
        pieces = split_sentences(text)
        if not pieces:
            return
        futures: list[Future[bytes]] = []
        try:
            futures.append(self._request(pieces[0]))
            for index in range(len(pieces)):
                if index + 1 < len(pieces):
                    futures.append(self._request(pieces[index + 1]))
                yield await asyncio.wrap_future(futures[index])
        finally:
            # A consumer that stops early (barge-in) leaves no render queued behind it.
            for future in futures:
                future.cancel()

    # -- callers' side ------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._thread is None:
            raise TtsError("not_running", "the synthesiser is not running: start() it first")

    def _request(self, text: str) -> Future[bytes]:
        """A future for the PCM of `text`: done at once for empty text or a memory hit."""
        self._require_started()
        future: Future[bytes] = Future()
        words = " ".join(text.split())
        if not any(char.isalnum() for char in words):
            future.set_result(b"")
            return future
        cached = self._memory_get(self._cache_key(words))
        if cached is not None:
            future.set_result(cached)
            return future
        with self._state_lock:
            self._require_started()  # close() may have run meanwhile
            self._jobs.put((words, future))
        return future

    def _cache_key(self, words: str) -> str:
        settings = self.settings
        parts = [_CACHE_FORMAT, self._voice_id, settings.rate_wpm, f"{settings.volume:.3f}"]
        return "\n".join(str(part) for part in [*parts, settings.keep_silence_ms, words])

    def _memory_get(self, key: str) -> bytes | None:
        with self._memory_lock:
            pcm = self._memory.get(key)
            if pcm is not None:
                self._memory.move_to_end(key)
            return pcm

    def _memory_put(self, key: str, pcm: bytes) -> None:
        if self.settings.cache_entries == 0:
            return
        with self._memory_lock:
            self._memory[key] = pcm
            self._memory.move_to_end(key)
            while len(self._memory) > self.settings.cache_entries:
                self._memory.popitem(last=False)

    # -- engine thread ------------------------------------------------------------------

    def _run_engine(self, ready: Future[None]) -> None:
        try:
            engine = _EspeakEngine()
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            self._serve_jobs(engine, ready)
        finally:
            engine.close()

    def _serve_jobs(self, engine: _EspeakEngine, ready: Future[None]) -> None:
        try:
            self._voice_id = _resolve_voice(self.settings.voice, engine.voices())
            if self.settings.cache_dir is not None:
                self.settings.cache_dir.mkdir(parents=True, exist_ok=True)
            render_dir = Path(tempfile.mkdtemp(prefix="voicebot-tts-"))
        except OSError as exc:
            ready.set_exception(TtsError("cache_unusable", f"tts files cannot be written: {exc}"))
            return
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while (job := self._jobs.get()) is not None:
                words, future = job
                if not future.set_running_or_notify_cancel():
                    continue  # cancelled while queued (a stream stopped early)
                try:
                    future.set_result(self._lookup_or_render(engine, render_dir, words))
                except BaseException as exc:
                    future.set_exception(exc)
        finally:
            shutil.rmtree(render_dir, ignore_errors=True)

    def _lookup_or_render(self, engine: _EspeakEngine, render_dir: Path, words: str) -> bytes:
        key = self._cache_key(words)
        pcm = self._memory_get(key)  # an earlier job in the queue may have rendered it
        if pcm is not None:
            return pcm
        disk_path = self._disk_path(key)
        if disk_path is not None:
            pcm = _read_disk_entry(disk_path)
        if pcm is None:
            pcm = self._render_checked(engine, render_dir, words)
            if disk_path is not None:
                _write_atomically(disk_path, pcm)
        self._memory_put(key, pcm)
        return pcm

    def _disk_path(self, key: str) -> Path | None:
        if self.settings.cache_dir is None:
            return None
        return self.settings.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()}.pcm"

    def _render_checked(self, engine: _EspeakEngine, render_dir: Path, words: str) -> bytes:
        """Renders, checks the WAV really holds the speech, and retries once if not."""
        problem = ""
        for attempt in range(1, _RENDER_ATTEMPTS + 1):
            wav_path = render_dir / f"render-{self.render_count}.wav"
            try:
                self.render_count += 1
                engine.render_wav(words, wav_path, self._voice_id, self.settings)
                samples, rate_hz = _read_wav(wav_path)
                problem = self._check_render(samples, rate_hz, words)
                if not problem:
                    pcm = to_mono_16k(samples, rate_hz)
                    return _trim_silence(pcm, self.settings.keep_silence_ms).tobytes()
            except (OSError, EOFError, wave.Error, RuntimeError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            finally:
                wav_path.unlink(missing_ok=True)
            log.warning("tts render %d of %r failed: %s", attempt, words[:60], problem)
        raise TtsError("render_failed", f"espeak-ng did not render {words[:60]!r}: {problem}")

    def _check_render(self, samples: np.ndarray, rate_hz: int, words: str) -> str:
        """What is wrong with a render, or "" if it looks like speech of the text."""
        duration_seconds = samples.shape[0] / rate_hz
        nominal_seconds = len(words.split()) * 60.0 / self.settings.rate_wpm
        minimum_seconds = max(_MIN_DURATION_SECONDS, _MIN_DURATION_FRACTION * nominal_seconds)
        if duration_seconds < minimum_seconds:
            return f"{duration_seconds:.2f} s of audio, expected at least {minimum_seconds:.2f} s"
        loud = np.abs(samples.astype(np.int32)) > _SILENCE_LEVEL
        if self.settings.volume > 0 and not loud.any():
            return "the audio is silent"
        return ""


def list_voices() -> list[tuple[str, str]]:
    """(id, name) of every espeak-ng voice, e.g. ("gmw/en-us", "English (America)").

    Needs no Synthesiser (so it works when the configured voice is wrong); listing is one
    synchronous espeak-ng call made under the same lock as the renders.
    """
    engine = _EspeakEngine()
    try:
        return engine.voices()
    finally:
        engine.close()


class _EspeakEngine:
    """pyttsx3's espeak-ng engine, used by one thread at a time.

    pyttsx3 runs espeak-ng in retrieval mode, which is asynchronous: parameter changes and
    synthesis are queued to espeak-ng's own thread, the driver writes the WAV from there, and
    runAndWait() may return before the file exists (seen as "the first save_to_file of a
    process is skipped"). runAndWait() also cancels whatever espeak-ng is still doing, which
    drops queued parameter changes and restores the previous rate and volume. So a render
    waits for espeak-ng to be idle before runAndWait() and for the finished notice after it.
    """

    def __init__(self) -> None:
        with _ESPEAK_LOCK:
            try:
                import pyttsx3

                self._engine = pyttsx3.init("espeak")
                espeak = importlib.import_module("pyttsx3.drivers._espeak")
            except (ImportError, OSError, RuntimeError) as exc:
                raise TtsError(
                    "engine_missing",
                    f"espeak-ng cannot be used ({exc}); install it with: {INSTALL_HINT}",
                ) from exc
            self._is_playing = espeak.IsPlaying
            self._finished = threading.Event()
            self._token = self._engine.connect("finished-utterance", self._on_finished)
            # The driver prints "Audio saved to ..." for every file; stdout is not its to use.
            vars(importlib.import_module("pyttsx3.drivers.espeak"))["print"] = _log_driver_print

    def _on_finished(self, **_details: object) -> None:
        self._finished.set()  # called on espeak-ng's thread once the WAV is written

    def voices(self) -> list[tuple[str, str]]:
        with _ESPEAK_LOCK:
            return [(voice.id, voice.name) for voice in self._engine.getProperty("voices")]

    def render_wav(self, words: str, path: Path, voice_id: str, settings: TtsSettings) -> None:
        """Has espeak-ng write `words` to a WAV file; TimeoutError if it does not finish."""
        with _ESPEAK_LOCK:
            self._finished.clear()
            self._wait_until_idle()
            self._engine.setProperty("voice", voice_id)
            self._engine.setProperty("rate", settings.rate_wpm)
            self._engine.setProperty("volume", settings.volume)
            self._wait_until_idle()
            self._engine.save_to_file(words, str(path))
            self._engine.runAndWait()
            if not self._finished.wait(_RENDER_TIMEOUT_SECONDS):
                self._engine.stop()
                raise TimeoutError(f"no finished notice within {_RENDER_TIMEOUT_SECONDS} s")
            self._wait_until_idle()

    def _wait_until_idle(self) -> None:
        deadline = time.monotonic() + _RENDER_TIMEOUT_SECONDS
        while self._is_playing():
            if time.monotonic() > deadline:
                raise TimeoutError(f"espeak-ng still busy after {_RENDER_TIMEOUT_SECONDS} s")
            time.sleep(_IDLE_POLL_SECONDS)

    def close(self) -> None:
        with _ESPEAK_LOCK:
            self._engine.disconnect(self._token)


def _log_driver_print(*values: object, **_options: object) -> None:
    log.debug("pyttsx3: %s", " ".join(str(value) for value in values))


def _resolve_voice(wanted: str, voices: list[tuple[str, str]]) -> str:
    """The id of the voice meant by an id, the id's last part ("en-us") or a name."""
    target = wanted.strip().lower()
    by_id = [voice_id for voice_id, _ in voices if voice_id.lower() == target]
    by_short_id = [voice_id for voice_id, _ in voices if _short_id(voice_id) == target]
    by_name = [voice_id for voice_id, name in voices if name.lower() == target]
    for found in (by_id, by_short_id, by_name):
        if found:
            return found[0]
    language = _short_id(target).split("-")[0]
    similar = [voice for voice in voices if _short_id(voice[0]).split("-")[0] == language]
    shown = ", ".join(f"{voice_id} ({name})" for voice_id, name in (similar or voices)[:8])
    raise TtsError("unknown_voice", f"espeak-ng has no voice {wanted!r}; available include {shown}")


def _short_id(voice_id: str) -> str:
    """The id without espeak-ng's language-family folder: "gmw/en-us" -> "en-us"."""
    return voice_id.lower().rsplit("/", 1)[-1]


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    """int16 samples, (n,) or (n, channels), and the rate of a 16-bit PCM WAV."""
    if not path.exists():
        raise OSError("pyttsx3 wrote no file")
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise wave.Error(f"expected 16-bit samples, got {8 * wav.getsampwidth()}-bit")
        channels, rate_hz = wav.getnchannels(), wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    if channels > 1:
        samples = samples[: samples.size // channels * channels].reshape(-1, channels)
    return samples.astype(np.int16), rate_hz


def _trim_silence(pcm: np.ndarray, keep_ms: int) -> np.ndarray:
    """Cuts digital silence at both ends down to `keep_ms`; all-silent audio stays as is."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > _SILENCE_LEVEL)
    if loud.size == 0:
        return pcm
    keep_samples = SAMPLE_RATE_HZ * keep_ms // 1000
    first = max(0, int(loud[0]) - keep_samples)
    last = min(pcm.size, int(loud[-1]) + 1 + keep_samples)
    return pcm[first:last]


def _read_disk_entry(path: Path) -> bytes | None:
    try:
        pcm = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("tts cache entry %s unreadable: %s", path, exc)
        return None
    return pcm if pcm and len(pcm) % 2 == 0 else None


def _write_atomically(path: Path, data: bytes) -> None:
    """Writes via a temporary file and a rename, so readers never see half an entry."""
    temp_path = path.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{path.name}")
    try:
        temp_path.write_bytes(data)
        os.replace(temp_path, path)
    except OSError as exc:
        temp_path.unlink(missing_ok=True)
        log.warning("tts cache entry %s not written: %s", path, exc)
