"""Speech output through the real espeak-ng, driven by pyttsx3 on the Synthesiser's thread."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bot.pcm import SAMPLE_RATE_HZ, rms_dbfs
from bot.speech.tts import Synthesiser, TtsError, TtsSettings, list_voices

PROJECT_DIR = Path(__file__).resolve().parents[2]
SENTENCE = "Thank you for calling the hotline, how can I help you today?"
THREE_SENTENCES = (
    "Your order number four five two one has shipped this morning. "
    "It should arrive at your address on Friday afternoon. "
    "Is there anything else I can help you with today?"
)


def seconds(pcm: bytes) -> float:
    return len(pcm) / 2 / SAMPLE_RATE_HZ


@pytest.fixture
def synthesiser() -> Iterator[Synthesiser]:
    with Synthesiser(TtsSettings()) as started:
        yield started


def test_sentence_renders_speech_of_plausible_length(synthesiser: Synthesiser) -> None:
    pcm = synthesiser.synthesise(SENTENCE)
    assert len(pcm) % 2 == 0
    # Eleven words at 175 words per minute: nominally 3.8 s.
    assert 1.5 < seconds(pcm) < 6.0
    assert rms_dbfs(pcm) > -35.0
    assert synthesiser.render_count == 1


def test_silence_around_the_speech_is_trimmed_to_about_30_ms(synthesiser: Synthesiser) -> None:
    samples = np.frombuffer(synthesiser.synthesise(SENTENCE), dtype=np.int16)
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 8)
    lead_ms = loud[0] * 1000 / SAMPLE_RATE_HZ
    trail_ms = (samples.size - 1 - loud[-1]) * 1000 / SAMPLE_RATE_HZ
    assert lead_ms <= 31
    # espeak-ng ends every text with about 300 ms of silence; only 30 ms of it remains.
    assert 25 <= trail_ms <= 31


def test_first_render_of_a_fresh_process_is_complete_speech() -> None:
    """espeak-ng renders on its own thread; pyttsx3's runAndWait() can return before the
    first WAV of a process is written. A long text makes that window wide."""
    long_answer = " ".join([THREE_SENTENCES] * 4)
    script = (
        "import json\n"
        "from bot.pcm import rms_dbfs\n"
        "from bot.speech.tts import Synthesiser, TtsSettings\n"
        "with Synthesiser(TtsSettings()) as synthesiser:\n"
        f"    pcm = synthesiser.synthesise({long_answer!r})\n"
        "print(json.dumps({'bytes': len(pcm), 'dbfs': rms_dbfs(pcm),"
        " 'renders': synthesiser.render_count}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # The driver's own "Audio saved to ..." lines must not reach stdout.
    result = json.loads(done.stdout)
    # 120 words at 175 words per minute: nominally 41 s.
    assert 25.0 < result["bytes"] / 2 / SAMPLE_RATE_HZ < 60.0
    assert result["dbfs"] > -35.0
    assert result["renders"] == 1


def test_faster_rate_gives_shorter_audio() -> None:
    with (
        Synthesiser(TtsSettings(rate_wpm=120)) as slow,
        Synthesiser(TtsSettings(rate_wpm=300)) as fast,
    ):
        slow_seconds = seconds(slow.synthesise(SENTENCE))
        fast_seconds = seconds(fast.synthesise(SENTENCE))
    assert fast_seconds < 0.7 * slow_seconds


def test_lower_volume_gives_quieter_audio() -> None:
    with (
        Synthesiser(TtsSettings(volume=1.0)) as loud,
        Synthesiser(TtsSettings(volume=0.3)) as quiet,
    ):
        loud_dbfs = rms_dbfs(loud.synthesise(SENTENCE))
        quiet_dbfs = rms_dbfs(quiet.synthesise(SENTENCE))
    # A factor of 0.3 is about -10 dB.
    assert 6.0 < loud_dbfs - quiet_dbfs < 15.0


def test_zero_volume_gives_silence_of_the_spoken_length() -> None:
    with Synthesiser(TtsSettings(volume=0.0)) as muted:
        pcm = muted.synthesise(SENTENCE)
    assert seconds(pcm) > 1.5
    assert rms_dbfs(pcm) == -100.0


def test_repeated_text_comes_from_memory_without_rendering(synthesiser: Synthesiser) -> None:
    first = synthesiser.synthesise(SENTENCE)
    again = synthesiser.synthesise(SENTENCE)
    respaced = synthesiser.synthesise(f"  {SENTENCE.replace(' ', '   ')}\n")
    assert again == first
    assert respaced == first
    assert synthesiser.render_count == 1


def test_memory_cache_forgets_the_least_recently_used_text() -> None:
    with Synthesiser(TtsSettings(cache_entries=2)) as synthesiser:
        for text in ("First prompt.", "Second prompt.", "First prompt.", "Third prompt."):
            synthesiser.synthesise(text)
        assert synthesiser.render_count == 3
        synthesiser.synthesise("First prompt.")
        assert synthesiser.render_count == 3
        synthesiser.synthesise("Second prompt.")
        assert synthesiser.render_count == 4


def test_disk_cache_survives_a_new_instance(tmp_path: Path) -> None:
    settings = TtsSettings(cache_dir=tmp_path / "tts-cache")
    with Synthesiser(settings) as first:
        rendered = first.synthesise(SENTENCE)
    entries = list((tmp_path / "tts-cache").iterdir())
    assert len(entries) == 1
    assert entries[0].suffix == ".pcm" and len(entries[0].stem) == 64
    assert entries[0].read_bytes() == rendered
    with Synthesiser(settings) as second:
        assert second.synthesise(SENTENCE) == rendered
        assert second.render_count == 0


def test_disk_cache_is_not_shared_across_rates(tmp_path: Path) -> None:
    with Synthesiser(TtsSettings(cache_dir=tmp_path, rate_wpm=175)) as normal:
        normal.synthesise(SENTENCE)
    with Synthesiser(TtsSettings(cache_dir=tmp_path, rate_wpm=250)) as faster:
        faster.synthesise(SENTENCE)
        assert faster.render_count == 1
    assert len(list(tmp_path.glob("*.pcm"))) == 2


def test_stream_yields_one_chunk_per_sentence_in_order(synthesiser: Synthesiser) -> None:
    async def collect() -> list[bytes]:
        return [chunk async for chunk in synthesiser.stream(THREE_SENTENCES)]

    chunks = asyncio.run(collect())
    assert len(chunks) == 3
    assert synthesiser.render_count == 3
    sentences = [f"{sentence}." for sentence in THREE_SENTENCES.rstrip(".?").split(". ")]
    sentences[-1] = sentences[-1][:-1] + "?"
    # Each sentence is now in memory: asking for it again returns the streamed chunk.
    assert [synthesiser.synthesise(sentence) for sentence in sentences] == chunks
    assert synthesiser.render_count == 3
    assert all(seconds(chunk) > 1.0 and rms_dbfs(chunk) > -35.0 for chunk in chunks)


def test_stream_renders_only_one_piece_ahead(synthesiser: Synthesiser) -> None:
    async def first_chunk_then_stop() -> bytes:
        async with contextlib.aclosing(synthesiser.stream(THREE_SENTENCES)) as chunks:
            async for chunk in chunks:
                return chunk
        raise AssertionError("no chunk")

    first = asyncio.run(first_chunk_then_stop())
    assert seconds(first) > 1.0
    renders_after_stop = synthesiser.render_count
    assert renders_after_stop in (1, 2)  # the second piece may have been rendering already
    synthesiser.synthesise("Is there anything else I can help you with today?")
    assert synthesiser.render_count == renders_after_stop + 1


def test_stream_of_nothing_yields_nothing(synthesiser: Synthesiser) -> None:
    async def collect() -> list[bytes]:
        return [chunk async for chunk in synthesiser.stream("   ")]

    assert asyncio.run(collect()) == []


def test_async_synthesise_leaves_the_loop_free(synthesiser: Synthesiser) -> None:
    async def run() -> tuple[bytes, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks_before = ticks
        pcm = await synthesiser.synthesise_async(THREE_SENTENCES)
        ticks_during = ticks - ticks_before
        ticking.cancel()
        return pcm, ticks_during

    pcm, ticks_during = asyncio.run(run())
    assert seconds(pcm) > 4.0
    assert ticks_during > 0


def test_concurrent_calls_from_several_threads_all_succeed(synthesiser: Synthesiser) -> None:
    texts = [f"Caller number {number} is next in the queue." for number in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(synthesiser.synthesise, texts))
    assert all(seconds(pcm) > 1.0 and rms_dbfs(pcm) > -35.0 for pcm in results)
    assert synthesiser.render_count == len(texts)


def test_two_synthesisers_in_one_process_keep_their_own_rates() -> None:
    with (
        Synthesiser(TtsSettings(rate_wpm=120)) as slow,
        Synthesiser(TtsSettings(rate_wpm=300)) as fast,
        ThreadPoolExecutor(max_workers=8) as pool,
    ):
        slow_jobs = [pool.submit(slow.synthesise, f"{SENTENCE} {n}") for n in range(4)]
        fast_jobs = [pool.submit(fast.synthesise, f"{SENTENCE} {n}") for n in range(4)]
        slow_seconds = [seconds(job.result()) for job in slow_jobs]
        fast_seconds = [seconds(job.result()) for job in fast_jobs]
    assert max(fast_seconds) < 0.7 * min(slow_seconds)


@pytest.mark.parametrize("text", ["", "   \n", "...", "?!"])
def test_nothing_to_say_gives_no_audio(synthesiser: Synthesiser, text: str) -> None:
    assert synthesiser.synthesise(text) == b""
    assert synthesiser.render_count == 0


@pytest.mark.parametrize("voice", ["gmw/en-us", "en-us", "EN-US", "English (America)"])
def test_voice_by_id_short_id_or_name(voice: str) -> None:
    with Synthesiser(TtsSettings(voice=voice)) as synthesiser:
        assert synthesiser.voice_id == "gmw/en-us"


def test_each_synthesiser_speaks_with_its_own_voice() -> None:
    american_settings = TtsSettings(voice="en-us", cache_entries=0)
    with Synthesiser(american_settings) as american, Synthesiser(TtsSettings(voice="de")) as german:
        assert german.voice_id == "gmw/de"
        american_before = seconds(american.synthesise(SENTENCE))
        german_seconds = seconds(german.synthesise(SENTENCE))
        american_after = seconds(american.synthesise(SENTENCE))
    # espeak-ng varies a render's length by well under 3 %; the German voice reads English
    # about 10 % slower. The second American render must not inherit the German voice.
    assert abs(american_after - american_before) < 0.03 * american_before
    assert abs(german_seconds - american_before) > 0.06 * american_before


def test_unknown_voice_names_available_voices() -> None:
    with pytest.raises(TtsError) as raised:
        Synthesiser(TtsSettings(voice="en-klingon")).start()
    assert raised.value.code == "unknown_voice"
    assert "en-klingon" in raised.value.message
    assert "gmw/en-us (English (America))" in raised.value.message


@pytest.mark.parametrize("while_synthesiser_runs", [False, True])
def test_list_voices_gives_ids_and_names(while_synthesiser_runs: bool) -> None:
    with contextlib.ExitStack() as stack:
        if while_synthesiser_runs:
            running = stack.enter_context(Synthesiser(TtsSettings()))
        voices = list_voices()
        if while_synthesiser_runs:
            assert seconds(running.synthesise(SENTENCE)) > 1.5
    assert ("gmw/en-us", "English (America)") in voices
    assert len(voices) > 20
    assert len({voice_id for voice_id, _ in voices}) == len(voices)


def test_use_before_start_or_after_close_is_an_error() -> None:
    synthesiser = Synthesiser(TtsSettings())
    with pytest.raises(TtsError) as before:
        synthesiser.synthesise(SENTENCE)
    assert before.value.code == "not_running"
    synthesiser.start()
    synthesiser.close()
    with pytest.raises(TtsError) as after:
        synthesiser.synthesise(SENTENCE)
    assert after.value.code == "not_running"


@pytest.mark.parametrize(
    "overrides", [{"rate_wpm": 20}, {"volume": 1.5}, {"cache_entries": -1}, {"keep_silence_ms": -5}]
)
def test_invalid_settings_are_refused(overrides: dict[str, float]) -> None:
    with pytest.raises(TtsError) as raised:
        TtsSettings(**overrides)  # type: ignore[arg-type]
    assert raised.value.code == "invalid_settings"


def test_missing_espeak_library_names_the_packages() -> None:
    """Hides the real libespeak-ng in a private mount namespace, as if it were not installed."""
    library = ctypes.util.find_library("espeak-ng")
    unshare = shutil.which("unshare")
    if library is None or unshare is None or os.geteuid() != 0:
        pytest.skip("needs root, unshare(1) and an installed libespeak-ng to hide")
    library_path = _library_path(library)
    script = (
        "import json\n"
        "from bot.speech.tts import Synthesiser, TtsError, TtsSettings, list_voices\n"
        "try:\n"
        "    Synthesiser(TtsSettings()).start()\n"
        "except TtsError as exc:\n"
        "    print(json.dumps({'code': exc.code, 'message': exc.message}))\n"
    )
    shell = f'mount --bind /dev/null "{library_path}" && exec "{sys.executable}" -c "$0"'
    done = subprocess.run(
        [unshare, "--mount", "sh", "-c", shell, script],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "unshare failed" in done.stderr or "mount:" in done.stderr:
        pytest.skip(f"cannot make a private mount namespace here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["code"] == "engine_missing"
    assert "apt-get install espeak-ng libespeak-ng1" in result["message"]


def _library_path(soname: str) -> str:
    """Where the dynamic loader finds a library, read from `ldconfig -p`."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True)
    for line in listing.stdout.splitlines():
        if line.strip().startswith(soname) and "=>" in line:
            return os.path.realpath(line.split("=>", 1)[1].strip())
    pytest.skip(f"ldconfig does not list {soname}")
