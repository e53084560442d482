"""Speech recognition with Vosk: one loaded model per process, one recogniser per call.

Everything here blocks (Kaldi decoding is CPU work): run it in a worker
thread, never on the asyncio loop. Vosk's C calls release the GIL, so calls
decode in parallel on several cores.

Vosk 0.3.45 cannot change its end-of-utterance rules at run time (no
``SetEndpointerDelays``); they are read from the model's ``conf/model.conf``.
``prepare_model_dir`` therefore builds a twin of the model folder (symlinks to
the large files) whose ``model.conf`` carries the configured rules.

What a call costs: Vosk composes the free-speech decoding graph (HCLr with
Gr) lazily, per recogniser, and keeps what it has built. A new recogniser
pays for that on every sound it meets for the first time; one that has
decoded 40 s of other speech costs a third to a half of the CPU on new speech
(benchmarks/asr_cost_bench.py). So free-speech decoders outlive calls: a
finished call's decoder goes back to its model and the next call starts
with it. Grammars get a decoder of their own, so a closed question does not
throw the warm free-speech graph away (Vosk's SetGrammar rebuilds it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MODEL_HINT = "run `voicebot models pull en-us` or pass --asr-model PATH"
# Vosk models spell the unknown-word symbol differently (English "[unk]", Korean "<UNK>").
UNKNOWN_WORDS = ("[unk]", "<unk>", "<UNK>")
# Kaldi endpoint rules rewritten in model.conf, by settings field.
_ENDPOINT_RULES = {
    "end_of_utterance_silence_ms": "--endpoint.rule2.min-trailing-silence",
    "uncertain_end_silence_ms": "--endpoint.rule3.min-trailing-silence",
    "any_end_silence_ms": "--endpoint.rule4.min-trailing-silence",
}
_DIGEST_CHARS = 12


class AsrError(RuntimeError):
    """Speech recognition cannot go on; ``code`` says why, for machines."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class AsrSettings:
    sample_rate_hz: int = 16_000
    # Kaldi's endpoint rules, as trailing silence after the last word:
    # rule 2 ends an utterance when the decoder is confident the sentence is
    # complete. 500 ms is Kaldi's own default and sits above the 200-400 ms
    # pauses callers make inside a sentence, while keeping the bot responsive.
    end_of_utterance_silence_ms: int = 500
    # Rule 3: the decoder is less sure the sentence is complete.
    uncertain_end_silence_ms: int = 1000
    # Rule 4: ends the utterance whatever the decoder thinks.
    any_end_silence_ms: int = 2000
    # 0: one hypothesis with per-word confidences. N > 0: an N-best list.
    max_alternatives: int = 0
    # Whether results carry word timings (confidence is computed either way).
    words: bool = True
    # Below this a result should be confirmed or asked again. Vosk's word
    # confidences are posteriors: under 0.5 the decoder thought another word
    # at least as likely, so the word is more likely wrong than right.
    low_confidence: float = 0.5
    # Words added to every grammar to soak up noise and out-of-grammar speech
    # and then removed from results. Needed for models whose unknown-word entry
    # does not absorb noise (the small Korean model); English models have a
    # working "[unk]" and need none.
    grammar_filler_words: tuple[str, ...] = ()
    # Free-speech decoders kept between calls, warm (0: a new one per call).
    # Each holds the part of the decoding graph it has built: about 100 MB
    # after 20-40 s of speech, 240 MB after 150 s (the small Korean model).
    warm_decoders: int = 8
    # A kept decoder is dropped once it has decoded this much audio, which
    # bounds the memory its graph can take.
    warm_decoder_max_audio_seconds: float = 1800.0

    def __post_init__(self) -> None:
        for name in _ENDPOINT_RULES:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.max_alternatives < 0:
            raise ValueError("max_alternatives must not be negative")
        if not 0.0 <= self.low_confidence <= 1.0:
            raise ValueError("low_confidence must be within 0..1")
        if self.warm_decoders < 0:
            raise ValueError("warm_decoders must not be negative")
        if self.warm_decoder_max_audio_seconds <= 0:
            raise ValueError("warm_decoder_max_audio_seconds must be positive")


@dataclass(frozen=True)
class Word:
    word: str
    start_s: float
    end_s: float
    conf: float


@dataclass(frozen=True)
class AsrResult:
    text: str
    is_final: bool
    # Mean word confidence (0..1); 0 without words. Unknown-word and filler
    # tokens are removed from text and words but count as 0 here.
    confidence: float = 0.0
    words: tuple[Word, ...] = ()
    # Seconds of audio the recogniser had received when this result was made.
    audio_end_s: float = 0.0
    # With max_alternatives > 0: the other hypotheses, best first.
    alternatives: tuple[str, ...] = ()


def _rewrite_model_conf(text: str, settings: AsrSettings) -> str:
    wanted = {
        option: f"{getattr(settings, field) / 1000:g}" for field, option in _ENDPOINT_RULES.items()
    }
    lines = []
    for line in text.splitlines():
        option = line.split("=", 1)[0].strip()
        if option in wanted:
            line = f"{option}={wanted.pop(option)}"
        lines.append(line)
    lines += [f"{option}={value}" for option, value in wanted.items()]
    return "\n".join(lines) + "\n"


def prepare_model_dir(model_path: Path, settings: AsrSettings, work_dir: Path) -> Path:
    """A folder that loads as ``model_path`` with the settings' endpoint rules.

    ``work_dir/<model name>-<hash>``: symlinks to everything in the model but
    ``conf/``, and a ``conf/`` whose ``model.conf`` has the rules rewritten
    (its other lines kept). Reused when it exists; created under a temporary
    name and renamed, so it is either complete or absent.
    """
    model_path = model_path.expanduser().absolute()
    if not model_path.is_dir():
        raise AsrError("model_missing", f"no speech model at {model_path}: {MODEL_HINT}")
    conf_path = model_path / "conf" / "model.conf"
    if not conf_path.is_file():
        raise AsrError(
            "model_invalid", f"{model_path} is not a Vosk model (no conf/model.conf): {MODEL_HINT}"
        )
    model_conf = _rewrite_model_conf(conf_path.read_text(encoding="utf-8"), settings)
    digest = hashlib.sha256(f"{model_path}\0{model_conf}".encode()).hexdigest()[:_DIGEST_CHARS]
    target = work_dir / f"{model_path.name}-{digest}"
    if target.is_dir():
        return target

    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=work_dir))
    except OSError as error:
        raise AsrError("work_dir_failed", f"cannot write to {work_dir}: {error}") from error
    try:
        for entry in model_path.iterdir():
            if entry.name != "conf":
                (building / entry.name).symlink_to(entry)
        (building / "conf").mkdir()
        for entry in conf_path.parent.iterdir():
            if entry.name != "model.conf":
                (building / "conf" / entry.name).symlink_to(entry)
        (building / "conf" / "model.conf").write_text(model_conf, encoding="utf-8")
        os.rename(building, target)
    except OSError as error:
        shutil.rmtree(building, ignore_errors=True)
        if target.is_dir():  # another process finished the same folder first
            return target
        raise AsrError("work_dir_failed", f"cannot build {target}: {error}") from error
    return target


def _import_vosk() -> Any:
    try:
        import vosk
    except ImportError as error:
        raise AsrError("vosk_missing", f"the vosk package cannot be imported: {error}") from error
    return vosk


# One loaded model per prepared folder, shared by every call in the process.
_loaded_models: dict[Path, Any] = {}
_loading_lock = threading.Lock()


class AsrModel:
    """A Vosk model, loaded once per process on first use (slow: seconds)."""

    def __init__(self, model_path: Path, settings: AsrSettings, work_dir: Path) -> None:
        self.model_path = model_path
        self.settings = settings
        self.work_dir = work_dir
        self._model: Any = None
        self._prepared_dir: Path | None = None
        self._unknown_symbol: str | None = None
        self._warm: list[_Decoder] = []
        self._warm_lock = threading.Lock()

    @property
    def prepared_dir(self) -> Path | None:
        return self._prepared_dir

    def load(self) -> None:
        """Prepares the folder and loads the model; blocking, thread-safe, idempotent."""
        with _loading_lock:
            if self._model is not None:
                return
            vosk = _import_vosk()
            vosk.SetLogLevel(-1)  # Kaldi's progress lines; warnings still show
            prepared = prepare_model_dir(self.model_path, self.settings, self.work_dir)
            model = _loaded_models.get(prepared)
            if model is None:
                try:
                    model = vosk.Model(str(prepared))
                except Exception as error:  # vosk raises a bare Exception
                    raise AsrError(
                        "model_invalid", f"Vosk could not load {self.model_path}: {MODEL_HINT}"
                    ) from error
                _loaded_models[prepared] = model
            self._prepared_dir = prepared
            self._model = model
            self._unknown_symbol = next(
                (w for w in UNKNOWN_WORDS if int(model.vosk_model_find_word(w)) >= 0), None
            )

    @property
    def supports_grammar(self) -> bool:
        """Whether phrase lists work: only models with a lookahead graph
        (graph/HCLr.fst + graph/Gr.fst) can build one at run time."""
        graph = self.model_path / "graph"
        return (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()

    def knows(self, word: str) -> bool:
        """Whether the word is in the model's vocabulary."""
        return int(self._loaded().vosk_model_find_word(word)) >= 0

    def unknown_words(self, phrases: list[str]) -> list[str]:
        """Words of the phrases that the model cannot recognise, in order."""
        words = dict.fromkeys(w for phrase in phrases for w in phrase.split())
        return [w for w in words if not self.knows(w)]

    @property
    def unknown_symbol(self) -> str | None:
        """The model's unknown-word entry ("[unk]" in most models), if any."""
        if self._model is None:
            self.load()
        return self._unknown_symbol

    def new_recogniser(self) -> Recogniser:
        """A recogniser for one call (cheap; loads the model first if needed).

        Its free-speech decoder is a kept one when there is one; it comes back
        when the recogniser is closed or garbage-collected.
        """
        vosk_model = self._loaded()
        with self._warm_lock:
            warm = self._warm.pop() if self._warm else None
        return Recogniser(self, vosk_model, warm)

    @property
    def warm_decoders(self) -> int:
        """Free-speech decoders waiting for the next call."""
        with self._warm_lock:
            return len(self._warm)

    def _keep_warm(self, decoder: _Decoder) -> None:
        # Runs when a call's recogniser is closed or collected: nobody else
        # holds the decoder, so it can be flushed here, on any thread.
        worn = decoder.samples >= self.settings.warm_decoder_max_audio_seconds * (
            self.settings.sample_rate_hz
        )
        if worn or self.warm_decoders >= self.settings.warm_decoders:
            return
        decoder.restart()
        with self._warm_lock:
            if len(self._warm) < self.settings.warm_decoders:
                self._warm.append(decoder)

    def _loaded(self) -> Any:
        if self._model is None:
            self.load()
        return self._model


def _confidence_from_scores(scores: list[float]) -> list[float]:
    """N-best scores (log-likelihoods) as posteriors of the N hypotheses."""
    top = max(scores)
    weights = [math.exp(score - top) for score in scores]
    return [w / sum(weights) for w in weights]


class _Decoder:
    """One Vosk recogniser, with the state Vosk does not report.

    ``samples`` is all the audio it was ever given: Vosk times words from its
    first sample. ``state``: "fresh" when the next audio starts a new round
    (new features and i-vector, as in a newly made recogniser), "running"
    inside an utterance, "ended" after Vosk's endpoint or a reset (the next
    utterance would carry on with the same features).
    """

    def __init__(self, kaldi: Any, grammar_json: str | None) -> None:
        self.kaldi = kaldi
        self.grammar_json = grammar_json
        self.samples = 0
        self.state = "fresh"

    def restart(self) -> None:
        """Drops what it holds, so the next audio starts a new round: what
        Vosk's SetGrammar does, without rebuilding the decoding graph."""
        if self.state == "ended":
            self.kaldi.AcceptWaveform(b"")  # running again, with no new audio
            self.state = "running"
        if self.state == "running":
            self.kaldi.FinalResult()  # frees the features; the next audio starts anew
        self.state = "fresh"


class Recogniser:
    """One call's recogniser: feed audio, read partial and final results.

    Use it from one worker thread at a time. Results are for 16-bit mono PCM
    at ``settings.sample_rate_hz``. Word times are seconds of the audio this
    recogniser was given, whichever decoder heard them.
    """

    def __init__(self, model: AsrModel, vosk_model: Any, warm: _Decoder | None = None) -> None:
        self._model = model
        self._vosk_model = vosk_model
        self.settings = model.settings
        self._free = warm or self._new_decoder(None)
        self._grammar_decoder: _Decoder | None = None
        self._active = self._free
        self._closed = False
        # The free-speech decoder goes back to the model when the call is over.
        self._finalizer = weakref.finalize(self, model._keep_warm, self._free)
        self._finalizer.atexit = False
        self._grammar: tuple[str, ...] | None = None
        self._dropped = set(UNKNOWN_WORDS)
        self._samples = 0
        # Decoder clock minus this recogniser's clock, in samples.
        self._offset = self._free.samples
        self._last_partial = ""

    def _new_decoder(self, grammar_json: str | None) -> _Decoder:
        vosk = _import_vosk()
        rate = float(self.settings.sample_rate_hz)
        try:
            if grammar_json is None:
                kaldi = vosk.KaldiRecognizer(self._vosk_model, rate)
            else:
                kaldi = vosk.KaldiRecognizer(self._vosk_model, rate, grammar_json)
        except Exception as error:
            raise AsrError("recogniser_failed", f"Vosk could not start: {error}") from error
        # Words are always requested: confidences come from them.
        kaldi.SetWords(True)
        kaldi.SetMaxAlternatives(self.settings.max_alternatives)
        return _Decoder(kaldi, grammar_json)

    def close(self) -> None:
        """Ends the call: the free-speech decoder goes back to the model for
        the next call (also done when the recogniser is garbage-collected)."""
        self._closed = True
        self._finalizer()

    @property
    def grammar(self) -> tuple[str, ...] | None:
        """The phrases of the current closed answer; None for free speech."""
        return self._grammar

    @property
    def audio_seconds(self) -> float:
        return self._samples / self.settings.sample_rate_hz

    def accept(self, frame: bytes) -> AsrResult | None:
        """Feeds audio; a final result when Vosk's endpoint fired, a partial
        when the partial text changed, else None. A final may have empty text
        (Vosk ends long stretches of silence too)."""
        if not frame or len(frame) % 2:
            raise AsrError("bad_audio", f"audio must be 16-bit PCM, got {len(frame)} bytes")
        decoder = self._decoder()
        self._samples += len(frame) // 2
        decoder.samples += len(frame) // 2
        decoder.state = "running"
        if decoder.kaldi.AcceptWaveform(bytes(frame)):
            decoder.state = "ended"
            return self._final(decoder.kaldi.Result())
        partial = json.loads(decoder.kaldi.PartialResult()).get("partial", "")
        text = " ".join(w for w in partial.split() if w not in self._dropped)
        if text == self._last_partial:
            return None
        self._last_partial = text
        return AsrResult(text=text, is_final=False, audio_end_s=self.audio_seconds)

    def final(self) -> AsrResult:
        """Ends the utterance now and returns what was said in it."""
        decoder = self._decoder()
        result = decoder.kaldi.FinalResult()
        if decoder.state == "running":
            decoder.state = "fresh"  # Vosk freed the features: the next audio starts anew
        return self._final(result)

    def reset(self) -> None:
        """Drops the utterance in progress; the grammar stays."""
        decoder = self._decoder()
        decoder.kaldi.Reset()
        if decoder.state == "running":
            decoder.state = "ended"
        self._last_partial = ""

    def set_grammar(self, phrases: list[str] | None) -> None:
        """Restricts the next utterance to ``phrases`` (a closed answer), or
        returns to free speech with None. Drops any utterance in progress.

        The model's unknown-word entry and the settings' filler words join the
        list so noise does not turn into a phrase; they never reach results.
        """
        if not self._model.supports_grammar:
            raise AsrError(
                "grammar_unsupported",
                f"{self._model.model_path} has a static graph: phrase lists need a model "
                "with graph/HCLr.fst and graph/Gr.fst (the small Vosk models)",
            )
        decoder = self._decoder()
        grammar_json: str | None
        if phrases is None:
            grammar_json = None
            self._dropped = set(UNKNOWN_WORDS)
            self._grammar = None
        else:
            # Vocabularies are lower case in most models; "Yes" should still work.
            cleaned = [
                [w if self._model.knows(w) else w.lower() for w in p.split()] for p in phrases
            ]
            missing = self._model.unknown_words([" ".join(p) for p in cleaned])
            if missing:
                log.warning("grammar words unknown to the speech model, ignored: %s", missing)
            known = [" ".join(w for w in p if w not in missing) for p in cleaned]
            known = [p for p in known if p]
            if not known:
                raise AsrError("bad_grammar", f"no phrase has a word the model knows: {phrases}")
            fillers = [w for w in self.settings.grammar_filler_words if self._model.knows(w)]
            extra = fillers + [w for w in [self._model.unknown_symbol] if w]
            # Vosk's JSON reader does not decode \u escapes: keep the text as it is.
            grammar_json = json.dumps(known + extra, ensure_ascii=False)
            self._dropped = set(UNKNOWN_WORDS) | set(fillers)
            self._grammar = tuple(known)
        # The utterance in progress is dropped (Vosk aborts the process when a
        # grammar is set inside one); the next audio starts a new round.
        decoder.restart()
        if grammar_json is None:
            decoder = self._free
        elif self._grammar_decoder is None:
            decoder = self._grammar_decoder = self._new_decoder(grammar_json)
        else:
            # A new graph each time, as before: grammar graphs are small and
            # quick to build, and a fresh one keeps grammar results as they were.
            decoder = self._grammar_decoder
            decoder.kaldi.SetGrammar(grammar_json)
            decoder.grammar_json = grammar_json
        decoder.restart()
        self._active = decoder
        self._offset = decoder.samples - self._samples
        self._last_partial = ""

    def _decoder(self) -> _Decoder:
        if self._closed:
            raise AsrError("recogniser_closed", "this call's recogniser was closed")
        return self._active

    def _final(self, result_json: str) -> AsrResult:
        self._last_partial = ""
        result = json.loads(result_json)
        alternatives: list[str] = []
        if "alternatives" in result:
            hypotheses = result["alternatives"] or [{}]
            posteriors = _confidence_from_scores([h.get("confidence", 0.0) for h in hypotheses])
            best = hypotheses[0]
            raw_words = [dict(w, conf=posteriors[0]) for w in best.get("result", [])]
            alternatives = [self._clean_text(h.get("text", "")) for h in hypotheses[1:]]
        else:
            raw_words = result.get("result", [])
        # Vosk's times (6 decimals) on this recogniser's clock.
        offset_s = self._offset / self.settings.sample_rate_hz
        words = tuple(
            Word(
                w["word"],
                round(float(w["start"]) - offset_s, 6),
                round(float(w["end"]) - offset_s, 6),
                float(w["conf"]),
            )
            for w in raw_words
            if w["word"] not in self._dropped
        )
        # Dropped tokens count as zero-confidence words: a mostly-noise result is doubtful.
        confidence = sum(w.conf for w in words) / len(raw_words) if raw_words else 0.0
        return AsrResult(
            text=" ".join(w.word for w in words),
            is_final=True,
            confidence=confidence,
            words=words if self.settings.words else (),
            audio_end_s=self.audio_seconds,
            alternatives=tuple(alternatives),
        )

    def _clean_text(self, text: str) -> str:
        return " ".join(w for w in text.split() if w not in self._dropped)
