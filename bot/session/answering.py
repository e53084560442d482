"""Who picked up a callback: a person or an answering machine.

People answer a call with a word or two ("hello?", "yes, speaking") and then
wait; a voicemail greeting talks on for several seconds ("You've reached the
Smiths, we can't come to the phone..."). The detector listens from the
answer, before the bot says anything, frame by frame on the voice gate's
decision:

- a person: speech that stops (``pause_ms`` of quiet) before
  ``machine_speech_ms`` of it, or nothing at all for ``quiet_ms`` (some
  people wait for the caller to speak first);
- a machine: ``machine_speech_ms`` of speech with no such pause.

When it is a machine, ``greeting_over`` then says when its greeting (and the
beep) has ended, so a message can be left on the recording.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bot.pcm import FRAME_MS


class Answered(str, enum.Enum):
    UNDECIDED = "undecided"
    PERSON = "person"
    MACHINE = "machine"


@dataclass(frozen=True)
class AnsweringSettings:
    machine_speech_ms: int = 3200
    pause_ms: int = 700
    quiet_ms: int = 2500
    # After a machine's greeting: this much quiet means the beep has gone.
    after_greeting_ms: int = 900
    # A greeting that never ends: leave the message anyway.
    longest_greeting_ms: int = 20000


class AnsweringDetector:
    def __init__(self, settings: AnsweringSettings | None = None) -> None:
        self.settings = settings or AnsweringSettings()
        self.verdict = Answered.UNDECIDED
        self._elapsed = 0
        self._speech = 0
        self._quiet = 0
        self._heard_any = False

    def frame(self, speech: bool) -> Answered:
        """One 20 ms frame's voice decision; the verdict so far."""
        settings = self.settings
        self._elapsed += FRAME_MS
        if speech:
            self._heard_any = True
            self._speech += FRAME_MS
            self._quiet = 0
        else:
            self._quiet += FRAME_MS
        if self.verdict is not Answered.UNDECIDED:
            return self.verdict
        paused = self._heard_any and self._quiet >= settings.pause_ms
        silent = not self._heard_any and self._elapsed >= settings.quiet_ms
        if self._speech >= settings.machine_speech_ms:
            self.verdict = Answered.MACHINE
        elif paused or silent:
            self.verdict = Answered.PERSON
        return self.verdict

    @property
    def greeting_over(self) -> bool:
        """For a machine: its greeting and beep are over (or took too long)."""
        settings = self.settings
        return self.verdict is Answered.MACHINE and (
            self._quiet >= settings.after_greeting_ms
            or self._elapsed >= settings.longest_greeting_ms
        )
