"""Round-trip YAML edits that leave the rest of a file as it was, and safe writes.

ruamel.yaml's round-trip mode keeps comments, key order and quoting, but it hangs
whatever follows a block (blank lines, the comment above the next section) on
that block's last scalar: appending naively puts the new item after the blank
line. ``append`` moves that trailing text below the new item, so the file
differs only by the added lines. ``changed_hunks`` lets callers check that.
"""

from __future__ import annotations

import difflib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import LiteralScalarString
from ruamel.yaml.tokens import CommentToken


class _Representer(RoundTripRepresenter):
    """Writes None as ``null``, as Rasa's files spell it, not as an empty value."""

    def represent_none(self, data: Any) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:null", "null")


# A subclass, so Rasa's own ruamel dumps in this process are not affected.
_Representer.add_representer(type(None), _Representer.represent_none)


def round_trip_yaml() -> YAML:
    """A round-trip YAML in the project's layout: two-space indents, lists indented
    under their key, quotes kept, long lines never folded."""
    yaml = YAML(typ="rt")
    yaml.Representer = _Representer
    yaml.preserve_quotes = True  # type: ignore[assignment]
    yaml.width = 1_000_000  # type: ignore[assignment]
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


def parse(text: str) -> Any:
    """The round-trip data of a YAML text (raises ruamel's YAMLError)."""
    return round_trip_yaml().load(text)


def dump(data: Any) -> str:
    """The YAML text of round-trip data."""
    stream = StringIO()
    round_trip_yaml().dump(data, stream)
    return stream.getvalue()


def line_changes(old: str, new: str) -> list[str]:
    """The kinds of the changed line hunks between two texts: "insert", "delete", "replace"."""
    matcher = difflib.SequenceMatcher(
        a=old.splitlines(keepends=True), b=new.splitlines(keepends=True), autojunk=False
    )
    return [tag for tag, *_ in matcher.get_opcodes() if tag != "equal"]


def child(parent: Any, key: str, kind: type) -> Any:
    """``parent[key]``, made an empty ``kind`` (added at the end if missing) unless it is one."""
    if not isinstance(parent.get(key), kind):
        if key in parent:
            parent[key] = kind()
        else:
            append(parent, key, kind())
    return parent[key]


def append(container: Any, key: Any, value: Any, separate: bool = False) -> None:
    """Adds ``value`` at the end of a mapping (under ``key``) or of a list (key None).

    What followed the old last item (blank lines, the comment above the next
    section) moves below the new one; ``separate`` puts a blank line between the
    two, as between the entries of an NLU or rules file."""
    moved: list[CommentToken] = []
    stays = ""  # an end-of-line comment stays on its line
    slots = _trailing_slots(container)
    for parent, slot_key, position in reversed(slots):
        entry = parent.ca.items.get(slot_key)
        token = entry[position] if entry and len(entry) > position else None
        if token is None:
            continue
        head, newline, rest = token.value.partition("\n")
        entry[position] = None
        if head.strip():
            stays = head + newline
            entry[position] = CommentToken(stays, token.start_mark, None)
            token = CommentToken("\n" + rest if rest else "", CommentMark(0), None)
        if token.value:
            moved.append(token)
    if separate and slots:
        last = slots[-1][0][slots[-1][1]]
        # A literal block ends with its own newline; a plain scalar's token holds it.
        gap = "\n" if stays or isinstance(last, LiteralScalarString) else "\n\n"
        _set_trailing(container, CommentToken(stays + gap, CommentMark(0), None))
    if key is None:
        container.append(value)
    else:
        container[key] = value
    if moved:
        text = "".join(token.value for token in moved)
        _set_trailing(container, CommentToken(text, moved[0].start_mark, None))


def _trailing_slots(node: Any) -> list[tuple[Any, Any, int]]:
    """Where comments after ``node``'s last line hang, outermost first: the
    (container, key, comment position) of each last item down to the last scalar."""
    slots: list[tuple[Any, Any, int]] = []
    while isinstance(node, CommentedMap | CommentedSeq) and node and not node.fa.flow_style():
        key = list(node)[-1] if isinstance(node, CommentedMap) else len(node) - 1
        slots.append((node, key, 2 if isinstance(node, CommentedMap) else 0))
        node = node[key]
    return slots


def _set_trailing(container: Any, token: CommentToken) -> None:
    parent, key, position = _trailing_slots(container)[-1]
    entry = parent.ca.items.setdefault(key, [None, None, None, None])
    entry[position] = token


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Holds an exclusive ``flock`` on ``path`` (created if missing); others wait."""
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def write_atomically(root: Path, contents: Mapping[Path, str]) -> None:
    """Replaces (or creates) each ``root / path`` with its text through a temporary
    file in the same folder and ``os.replace``; all are written before any is moved.
    Raises OSError, leaving no temporary file behind."""
    staged: list[tuple[str, Path]] = []
    try:
        for rel, text in contents.items():
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(
                dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"
            )
            staged.append((temporary, target))
            with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temporary, target.stat().st_mode & 0o777 if target.exists() else 0o644)
        for temporary, target in staged:
            os.replace(temporary, target)
    except OSError:
        for temporary, _ in staged:
            Path(temporary).unlink(missing_ok=True)
        raise
