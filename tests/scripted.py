"""Test double for acoustic decoding only: no English Vosk model exists on this
machine, so where a test needs English words out of English audio, this
recogniser stands in for Vosk's decoding. It returns the next scripted
sentence when the turn ends (at the end of speech the real voice activity
detector and segmenter found), and growing partials while audio is fed.
Everything around it (audio, VAD, segmentation, dialogue, speech) is real."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScriptedResult:
    text: str
    is_final: bool
    confidence: float


@dataclass
class ScriptedRecogniser:
    sentences: list[str]
    confidence: float = 0.9
    # Frames of audio per partial word: partials grow while the caller speaks.
    frames_per_word: int = 18
    grammars: list[list[str] | None] = field(default_factory=list)
    _fed: int = 0
    _turn: int = 0

    def accept(self, frame: bytes) -> ScriptedResult | None:
        self._fed += 1
        if self._turn >= len(self.sentences) or self._fed % self.frames_per_word:
            return None
        words = self.sentences[self._turn].split()
        shown = min(len(words), self._fed // self.frames_per_word)
        return ScriptedResult(" ".join(words[:shown]), False, 0.0)

    def final(self) -> ScriptedResult:
        if self._turn >= len(self.sentences):
            return ScriptedResult("", True, 0.0)
        text = self.sentences[self._turn]
        self._turn += 1
        return ScriptedResult(text, True, self.confidence)

    def set_grammar(self, phrases: list[str] | None) -> None:
        self.grammars.append(phrases)

    def reset(self) -> None:
        self._fed = 0
