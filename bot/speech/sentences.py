"""Splitting a bot answer into pieces that can be rendered and played one after another.

The first piece should be short enough to render quickly, later pieces render while the
earlier ones play. Splitting happens at sentence ends; a sentence that is still too long
is cut at clause punctuation, and as a last resort between words.
"""

from __future__ import annotations

import re

SHORT_TEXT_CHARS = 60
MIN_PIECE_CHARS = 12
MAX_PIECE_CHARS = 160

# Words written with a full stop that does not end the sentence ("Mr. Smith").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "mt", "vs", "e.g", "i.e", "cf", "approx"}
)
# "No." is the word "no" ending a sentence unless a number follows ("No. 5").
_NUMBER_ABBREVIATIONS = frozenset({"no", "nos", "nr"})

# Terminal punctuation (a run, so "?!" and "..." count once), closing quotes or
# brackets that belong to the sentence, then the whitespace that separates sentences.
_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]’”]*\s+")
_CLAUSE_END = re.compile(r"(?:[,;:]|\s[-–—])\s+")
_OPENING_PUNCTUATION = "\"'([‘“"


def split_sentences(
    text: str,
    *,
    short_text_chars: int = SHORT_TEXT_CHARS,
    min_piece_chars: int = MIN_PIECE_CHARS,
    max_piece_chars: int = MAX_PIECE_CHARS,
) -> list[str]:
    """The text as pieces to speak in order: whole if short, else sentences and clauses.

    Whitespace inside a piece is collapsed; no piece is empty or only punctuation;
    pieces shorter than `min_piece_chars` join a neighbour.
    """
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return []
    whole = " ".join(lines)
    if len(whole) <= short_text_chars:
        return [whole]
    sentences = [sentence for line in lines for sentence in _sentences_of_line(line)]
    pieces: list[str] = []
    for sentence in _attach_bare_punctuation(sentences):
        pieces.extend(_cut_long(sentence, min_piece_chars, max_piece_chars))
    return _merge_short(pieces, min_piece_chars)


def _sentences_of_line(line: str) -> list[str]:
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(line):
        if _ends_sentence(line, start, match):
            sentences.append(line[start : match.end()].strip())
            start = match.end()
    if start < len(line):
        sentences.append(line[start:].strip())
    return sentences


def _ends_sentence(line: str, piece_start: int, match: re.Match[str]) -> bool:
    """Whether the punctuation in `match` ends a sentence, judged by the words around it."""
    terminal = match.group().rstrip()
    following = line[match.end() : match.end() + 1]
    if "!" in terminal or "?" in terminal:
        return True
    # A full stop or an ellipsis followed by a lower-case word continues the sentence.
    if following.islower():
        return False
    if terminal.rstrip("\"')]’”") != ".":
        return True
    word_start = line.rfind(" ", piece_start, match.start()) + 1
    word = line[max(word_start, piece_start) : match.start()].lstrip(_OPENING_PUNCTUATION).lower()
    if word in _ABBREVIATIONS:
        return False
    if word in _NUMBER_ABBREVIATIONS and following.isdigit():
        return False
    # A single capital letter is an initial ("J. Smith").
    if len(word) == 1 and line[match.start() - 1].isupper():
        return False
    # A number opening the piece is a list marker ("1. Pay a bill").
    return not (word.isdigit() and word_start <= piece_start)


def _attach_bare_punctuation(sentences: list[str]) -> list[str]:
    """Joins pieces with nothing to say ("...", "!") to the sentence before (or after)."""
    attached: list[str] = []
    dangling = ""
    for sentence in sentences:
        if not any(char.isalnum() for char in sentence):
            if attached:
                attached[-1] = f"{attached[-1]} {sentence}"
            else:
                dangling = f"{dangling} {sentence}".strip()
            continue
        attached.append(f"{dangling} {sentence}".strip())
        dangling = ""
    return attached


def _cut_long(sentence: str, min_chars: int, max_chars: int) -> list[str]:
    if len(sentence) <= max_chars:
        return [sentence]
    clauses: list[str] = []
    start = 0
    for match in _CLAUSE_END.finditer(sentence):
        clauses.append(sentence[start : match.end()].strip())
        start = match.end()
    clauses.append(sentence[start:].strip())
    pieces: list[str] = []
    for clause in clauses:
        joined = f"{pieces[-1]} {clause}" if pieces else clause
        if pieces and (len(joined) <= max_chars or len(clause) < min_chars):
            pieces[-1] = joined
        else:
            pieces.append(clause)
    return [part for piece in pieces for part in _cut_between_words(piece, max_chars)]


def _cut_between_words(piece: str, max_chars: int) -> list[str]:
    parts: list[str] = []
    current = ""
    for word in piece.split(" "):
        if current and len(current) + 1 + len(word) > max_chars:
            parts.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    parts.append(current)
    return parts


def _merge_short(pieces: list[str], min_chars: int) -> list[str]:
    """A short piece joins the next one; a short last piece joins the one before."""
    merged: list[str] = []
    for piece in pieces:
        if merged and len(merged[-1]) < min_chars:
            merged[-1] = f"{merged[-1]} {piece}"
        else:
            merged.append(piece)
    if len(merged) > 1 and len(merged[-1]) < min_chars:
        last = merged.pop()
        merged[-1] = f"{merged[-1]} {last}"
    return merged
