"""When a call goes to a person, how urgently, and to which skill.

The rules live in the ``escalation`` section of ``voicebot.yml``; this module
reads them and applies the two reasons the dialogue itself does not raise:

- ``complaint``: a complaint serious enough for a person: the caller's words
  include one of ``serious_complaint_words`` (legal action, injury, safety,
  fraud...), whatever the intent, or the bot has filed
  ``repeat_complaints`` complaint tickets in the call. The complaint is filed (the
  caller hears the ticket number) and then the call goes to a person.
- ``caller_frustrated``: ``negative_turns`` caller turns with a negative
  word (``frustration_words``), or a turn shouted, or the same request
  (intent) made ``same_request_turns`` times in one call. A turn's loudness
  is the mean power of its speech frames (dBFS, measured by the turn
  detector): shouted is at least ``shout_rise_db`` above the median of the
  caller's earlier turns (their own voice on their own line: one caller's
  turns vary by about 6 dB in the recordings we measured, while shouting adds
  10 dB or more), or above ``shout_dbfs`` outright (speech near clipping).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# The dialogue's own reasons plus the two raised here.
REASONS = (
    "explicit_request",
    "callback_requested",
    "repeated_fallback",
    "no_progress",
    "action_failure",
    "complaint",
    "caller_frustrated",
)
_REQUEST_INTENTS_EXCLUDED = {
    "affirm", "deny", "inform", "thank_you", "greet", "goodbye", "repeat", "nlu_fallback", "",
}  # fmt: skip


class EscalationConfigError(ValueError):
    """The escalation section of the settings cannot be used."""


@dataclass(frozen=True)
class ReasonRule:
    priority: int
    kind: str = "call"  # "call", or "callback" for a call-back task


@dataclass(frozen=True)
class EscalationRules:
    reasons: dict[str, ReasonRule]
    skill_by_intent: dict[str, str]
    default_skill: str = "general"
    serious_complaint_words: tuple[str, ...] = ()
    repeat_complaints: int = 2
    frustration_words: tuple[str, ...] = ()
    negative_turns: int = 2
    shout_dbfs: float = -6.0
    shout_rise_db: float = 10.0
    same_request_turns: int = 3
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict, compare=False)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> EscalationRules:
        try:
            reasons = {
                name: ReasonRule(int(rule.get("priority", 1)), str(rule.get("kind", "call")))
                for name, rule in (raw.get("reasons") or {}).items()
            }
            rules = cls(
                reasons=reasons,
                skill_by_intent={str(k): str(v) for k, v in (raw.get("skills") or {}).items()},
                default_skill=str(raw.get("default_skill", "general")),
                serious_complaint_words=tuple(raw.get("serious_complaint_words") or ()),
                repeat_complaints=int(raw.get("repeat_complaints", 2)),
                frustration_words=tuple(raw.get("frustration_words") or ()),
                negative_turns=int(raw.get("negative_turns", 2)),
                shout_dbfs=float(raw.get("shout_dbfs", -6.0)),
                shout_rise_db=float(raw.get("shout_rise_db", 10.0)),
                same_request_turns=int(raw.get("same_request_turns", 3)),
            )
        except (AttributeError, TypeError, ValueError) as exc:
            raise EscalationConfigError(f"escalation settings: {exc}") from exc
        missing = [name for name in REASONS if name not in reasons]
        if missing:
            raise EscalationConfigError(
                f"escalation settings: no rule for reason(s) {', '.join(missing)}"
            )
        for name, rule in reasons.items():
            if rule.kind not in {"call", "callback"}:
                raise EscalationConfigError(
                    f"escalation reason {name}: kind must be call or callback"
                )
        return rules

    def _matcher(self, name: str, words: Sequence[str]) -> re.Pattern[str]:
        if name not in self._patterns:
            alternatives = "|".join(re.escape(w.lower()) for w in words) or r"(?!x)x"
            self._patterns[name] = re.compile(rf"\b(?:{alternatives})\b")
        return self._patterns[name]

    def rule(self, reason: str) -> ReasonRule:
        return self.reasons.get(reason, ReasonRule(1))

    def skill_for(self, intents: Sequence[str]) -> str:
        """The skill of the caller's latest task intent."""
        for intent in reversed(intents):
            if intent in self.skill_by_intent:
                return self.skill_by_intent[intent]
        return self.default_skill

    def is_serious_complaint(self, text: str) -> bool:
        return bool(self._matcher("serious", self.serious_complaint_words).search(text.lower()))

    def is_negative(self, text: str) -> bool:
        return bool(self._matcher("negative", self.frustration_words).search(text.lower()))


@dataclass(frozen=True)
class CallerTurn:
    """What the detector needs of one caller turn."""

    text: str
    intent: str
    loudness_dbfs: float | None = None
    # The bot filed a complaint ticket on this turn.
    complaint_filed: bool = False


def detect(rules: EscalationRules, turns: Sequence[CallerTurn]) -> str | None:
    """``complaint`` or ``caller_frustrated`` if the call so far calls for it, else None."""
    if not turns:
        return None
    latest = turns[-1]
    if any(rules.is_serious_complaint(t.text) for t in turns):
        return "complaint"
    if sum(1 for t in turns if t.complaint_filed) >= rules.repeat_complaints:
        return "complaint"
    if sum(1 for t in turns if rules.is_negative(t.text)) >= rules.negative_turns:
        return "caller_frustrated"
    if shouted(rules, turns):
        return "caller_frustrated"
    requests = [t.intent for t in turns if t.intent not in _REQUEST_INTENTS_EXCLUDED]
    if requests and requests.count(latest.intent) >= rules.same_request_turns:
        return "caller_frustrated"
    return None


def shouted(rules: EscalationRules, turns: Sequence[CallerTurn]) -> bool:
    """The latest turn is much louder than the caller's own earlier turns (or
    near clipping)."""
    latest = turns[-1].loudness_dbfs
    if latest is None:
        return False
    if latest >= rules.shout_dbfs:
        return True
    earlier = sorted(t.loudness_dbfs for t in turns[:-1] if t.loudness_dbfs is not None)
    if not earlier:
        return False
    median = earlier[len(earlier) // 2]
    return latest - median >= rules.shout_rise_db
