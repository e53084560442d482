"""The review inbox: caller turns grouped by what was said, the doubtful first.

Every caller turn the dialogue handled is reviewable. A turn needs a look when
an agent flagged it, when the bot fell back (``nlu_fallback``, ``out_of_scope``),
when it was the caller's last turn before an escalation, or when intent or
speech-recognition confidence was low. Near-identical utterances ("where is my
parcel", "uh where is my parcel", "where's my parcel please") form one item, so
one decision covers them all. Texts are redacted before anyone sees them.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bot.nlu.number_words import is_number_word
from bot.store import calls, turns
from bot.training.schema import create_training_tables, decided_keys, turn_flags

# Reasons, in the order the inbox shows them.
REASONS = (
    "agent_flagged",
    "fallback",
    "before_escalation",
    "low_confidence",
    "low_asr_confidence",
    "routine",
)
NEEDS_LOOK = frozenset(REASONS[:-1])
FALLBACK_INTENTS = frozenset({"nlu_fallback", "out_of_scope"})
# Turns that never reached the dialogue (caller speech while on hold).
NOT_DIALOGUE_INTENTS = frozenset({"on_hold", "agent_speech", ""})

# Words that change nothing about what a caller wants.
FILLERS = frozenset(
    "um umm uh uhh er erm hmm mm ah oh ok okay so well yeah please hi hello hey".split()
)
# Two texts this similar (by words, after normalising) are one item.
NEAR_IDENTICAL_RATIO = 0.85
# How many distinct texts are compared pairwise for near-duplicates.
MAX_FUZZY_KEYS = 4000
MAX_TURNS = 50_000
REDACTION_CACHE = 60_000

_NOT_WORD = re.compile(r"[^\w\[\]#' ]+")
_SPACES = re.compile(r"\s+")


class TextRedactor(Protocol):
    def redact(self, text: str) -> Any: ...


def text_key(text: str) -> str:
    """What two utterances share when one decision should cover both: lowercase
    words without fillers or punctuation, any run of numbers as ``#``."""
    cleaned = _SPACES.sub(" ", _NOT_WORD.sub(" ", text.lower().replace("’", "'"))).strip()
    words: list[str] = []
    for word in cleaned.split():
        word = word.strip("'")
        if not word or word in FILLERS:
            continue
        is_number = word.isdigit() or is_number_word(word) or word == "oh"
        if is_number:
            if not words or words[-1] != "#":
                words.append("#")
            continue
        words.append(word)
    return " ".join(words)


def key_hash(key: str) -> str:
    """How a decided text is remembered (texts can be long; hashes are not)."""
    return hashlib.sha256(key.encode()).hexdigest()


def item_id_for(key: str) -> str:
    return "u" + hashlib.sha1(key.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class InboxTurn:
    """One caller turn as the inbox reads it."""

    turn_id: int
    call_id: str
    channel: str
    created_at: datetime
    text: str  # redacted
    intent: str
    confidence: float
    asr_confidence: float | None
    reasons: tuple[str, ...]
    key: str
    # What agents who flagged the turn wrote (redacted when written).
    flag_notes: tuple[str, ...] = ()


@dataclass
class InboxItem:
    """Near-identical caller turns: one decision covers them all."""

    id: str
    text: str
    reason: str
    reasons: tuple[str, ...]
    predicted_intent: str
    confidence: float
    count: int
    calls: int
    variants: tuple[str, ...]
    keys: tuple[str, ...]
    first_seen: datetime
    last_seen: datetime
    turns: tuple[InboxTurn, ...] = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        """The CLI's JSON line (``voicebot train inbox --json``)."""
        return {
            "id": self.id,
            "text": self.text,
            "reason": self.reason,
            "reasons": list(self.reasons),
            "predicted_intent": self.predicted_intent,
            "confidence": round(self.confidence, 4),
            "count": self.count,
            "calls": self.calls,
            "variants": list(self.variants),
            "first_seen": self.first_seen.isoformat(timespec="seconds"),
            "last_seen": self.last_seen.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class InboxFilter:
    """What the trainer asked to see. Empty fields do not filter."""

    reason: str = ""
    intent: str = ""
    since: datetime | None = None
    until: datetime | None = None
    search: str = ""
    # Items with no reason to doubt them are listed only when asked for.
    include_routine: bool = False


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _turn_reasons(
    intent: str,
    confidence: float,
    asr_confidence: float | None,
    flagged: bool,
    before_escalation: bool,
    low_intent: float,
    low_asr: float,
) -> tuple[str, ...]:
    found = []
    if flagged:
        found.append("agent_flagged")
    if intent in FALLBACK_INTENTS:
        found.append("fallback")
    if before_escalation:
        found.append("before_escalation")
    if confidence < low_intent:
        found.append("low_confidence")
    if asr_confidence is not None and asr_confidence < low_asr:
        found.append("low_asr_confidence")
    return tuple(found) or ("routine",)


class ReviewInbox:
    """Reads the call store's turns and groups them into review items."""

    def __init__(
        self,
        engine: Engine,
        redactor: TextRedactor,
        low_intent_confidence: float = 0.6,
        low_asr_confidence: float = 0.6,
    ) -> None:
        self._engine = engine
        self._redactor = redactor
        self._low_intent = low_intent_confidence
        self._low_asr = low_asr_confidence
        self._redacted: OrderedDict[str, str] = OrderedDict()
        create_training_tables(engine)

    def _redact(self, text: str) -> str:
        cached = self._redacted.get(text)
        if cached is None:
            cached = str(self._redactor.redact(text).text)
            self._redacted[text] = cached
            if len(self._redacted) > REDACTION_CACHE:
                self._redacted.popitem(last=False)
        else:
            self._redacted.move_to_end(text)
        return cached

    def _tables_exist(self) -> bool:
        with self._engine.connect() as conn:
            inspector = sa.inspect(conn)
            return bool(inspector.has_table(turns.name) and inspector.has_table(calls.name))

    def read_turns(
        self, since: datetime | None = None, until: datetime | None = None
    ) -> list[InboxTurn]:
        """Caller turns (newest first), without those a decision already covers."""
        if not self._tables_exist():
            return []
        query = (
            sa.select(
                turns.c.id,
                turns.c.call_id,
                turns.c.turn_index,
                turns.c.created_at,
                turns.c.transcript,
                turns.c.intent,
                turns.c.intent_confidence,
                turns.c.asr_confidence,
                calls.c.channel,
                calls.c.escalation_reason,
            )
            .select_from(turns.join(calls, calls.c.call_id == turns.c.call_id))
            .where(turns.c.transcript != "", turns.c.intent.notin_(NOT_DIALOGUE_INTENTS))
            .order_by(turns.c.created_at.desc(), turns.c.id.desc())
            .limit(MAX_TURNS)
        )
        if since is not None:
            query = query.where(turns.c.created_at >= since)
        if until is not None:
            query = query.where(turns.c.created_at < until)
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            flagged: dict[int, list[str]] = {}
            for turn_id, note in conn.execute(sa.select(turn_flags.c.turn_id, turn_flags.c.note)):
                flagged.setdefault(turn_id, []).extend([note] if note else [])
            decided = {row[0] for row in conn.execute(sa.select(decided_keys.c.text_hash))}
        last_before_escalation = _last_dialogue_turns(
            (row["call_id"], row["turn_index"], row["id"]) for row in rows
            if row["escalation_reason"]
        )  # fmt: skip
        found = []
        for row in rows:
            text = self._redact(row["transcript"])
            key = text_key(text)
            if not key or key_hash(key) in decided:
                continue
            confidence = float(row["intent_confidence"] or 0.0)
            asr = row["asr_confidence"]
            reasons = _turn_reasons(
                row["intent"] or "",
                confidence,
                float(asr) if asr is not None else None,
                row["id"] in flagged,
                row["id"] in last_before_escalation,
                self._low_intent,
                self._low_asr,
            )
            found.append(
                InboxTurn(
                    turn_id=row["id"],
                    call_id=row["call_id"],
                    channel=row["channel"],
                    created_at=_aware(row["created_at"]),
                    text=text,
                    intent=row["intent"] or "",
                    confidence=confidence,
                    asr_confidence=float(asr) if asr is not None else None,
                    reasons=reasons,
                    key=key,
                    flag_notes=tuple(flagged.get(row["id"], ())),
                )
            )
        return found

    def items(self, wanted: InboxFilter | None = None) -> list[InboxItem]:
        """Review items, the ones needing a look first. Items are grouped from
        every turn (so an item has the same id whatever the filter); dates
        keep the items with a turn in the period."""
        wanted = wanted or InboxFilter()
        groups = group_turns(self.read_turns())
        return [item for item in sort_items(groups) if _matches(item, wanted)]

    def by_id(self) -> dict[str, InboxItem]:
        """Every undecided item by its id."""
        return {item.id: item for item in group_turns(self.read_turns())}

    def item(self, item_id: str) -> InboxItem | None:
        """One item by id, or None when no undecided turn forms it any more."""
        return self.by_id().get(item_id)


def _last_dialogue_turns(rows: Iterable[tuple[str, int, int]]) -> set[int]:
    """Turn ids of each escalated call's last dialogue turn."""
    last: dict[str, tuple[int, int]] = {}
    for call_id, index, turn_id in rows:
        if call_id not in last or index > last[call_id][0]:
            last[call_id] = (index, turn_id)
    return {turn_id for _index, turn_id in last.values()}


def group_turns(found: Sequence[InboxTurn]) -> list[InboxItem]:
    """Turns with the same key form a group; groups whose keys are near-identical merge."""
    by_key: dict[str, list[InboxTurn]] = {}
    for turn in found:
        by_key.setdefault(turn.key, []).append(turn)
    keys = sorted(by_key, key=lambda k: -len(by_key[k]))
    parent = {key: key for key in keys}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    compared = keys[:MAX_FUZZY_KEYS]
    words = {key: key.split() for key in compared}
    bags = {key: Counter(words[key]) for key in compared}
    # Only pairs sharing a word can be near-identical: the inverted index
    # keeps the pairwise work to those.
    by_word: dict[str, list[int]] = {}
    for index, key in enumerate(compared):
        for word in bags[key]:
            by_word.setdefault(word, []).append(index)
    for i, first in enumerate(compared):
        a = words[first]
        candidates = sorted({j for word in bags[first] for j in by_word[word] if j > i})
        for j in candidates:
            second = compared[j]
            b = words[second]
            if abs(len(a) - len(b)) > max(1, len(a) // 4):
                continue
            # Shared words bound the similarity from above; most pairs stop here.
            shared = sum((bags[first] & bags[second]).values())
            if 2 * shared / (len(a) + len(b)) < NEAR_IDENTICAL_RATIO:
                continue
            matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
            if matcher.ratio() >= NEAR_IDENTICAL_RATIO:
                parent[root(second)] = root(first)
    clusters: dict[str, list[str]] = {}
    for key in keys:
        clusters.setdefault(root(key), []).append(key)
    return [_item(sorted(members), by_key) for members in clusters.values()]


def _item(keys: list[str], by_key: dict[str, list[InboxTurn]]) -> InboxItem:
    members = [turn for key in keys for turn in by_key[key]]
    texts = Counter(turn.text for turn in members)
    # The most said wording represents the item; ties go to the shortest.
    text = min(texts, key=lambda t: (-texts[t], len(t), t))
    intents = Counter(turn.intent for turn in members)
    reasons = sorted({r for turn in members for r in turn.reasons}, key=REASONS.index)
    if len(reasons) > 1 and "routine" in reasons:
        reasons.remove("routine")
    return InboxItem(
        id=item_id_for(keys[0]),
        text=text,
        reason=reasons[0],
        reasons=tuple(reasons),
        predicted_intent=intents.most_common(1)[0][0],
        confidence=sum(turn.confidence for turn in members) / len(members),
        count=len(members),
        calls=len({turn.call_id for turn in members}),
        variants=tuple(sorted(texts, key=lambda t: (-texts[t], t))),
        keys=tuple(keys),
        first_seen=min(turn.created_at for turn in members),
        last_seen=max(turn.created_at for turn in members),
        turns=tuple(sorted(members, key=lambda turn: turn.created_at)),
    )


def sort_items(items: Iterable[InboxItem]) -> list[InboxItem]:
    return sorted(
        items, key=lambda item: (REASONS.index(item.reason), -item.count, item.confidence, item.id)
    )


def _matches(item: InboxItem, wanted: InboxFilter) -> bool:
    if wanted.reason:
        if wanted.reason not in item.reasons:
            return False
    elif not wanted.include_routine and item.reason == "routine":
        return False
    if wanted.intent and item.predicted_intent != wanted.intent:
        return False
    if wanted.since is not None or wanted.until is not None:
        since = wanted.since or datetime.min.replace(tzinfo=timezone.utc)
        until = wanted.until or datetime.max.replace(tzinfo=timezone.utc)
        if not any(since <= turn.created_at < until for turn in item.turns):
            return False
    if wanted.search:
        needle = wanted.search.lower()
        if not any(needle in variant.lower() for variant in item.variants):
            return False
    return True


def flag_turn(engine: Engine, turn_id: int, call_id: str, flagged_by: str, note: str = "") -> bool:
    """Records an agent's "the bot misunderstood this"; False if they had already."""
    row = {
        "turn_id": turn_id,
        "call_id": call_id,
        "flagged_by": flagged_by,
        "note": note,
        "created_at": datetime.now(timezone.utc),
    }
    try:
        with engine.begin() as conn:
            conn.execute(turn_flags.insert().values(**row))
    except sa.exc.IntegrityError:
        return False
    return True
