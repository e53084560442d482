"""Trainers' decisions written into the Rasa project's training data.

The project's ``domain.yml``, ``data/nlu/*.yml`` and ``data/rules/*.yml`` are
edited in ruamel.yaml's round-trip mode, so comments, key order, quoting and the
``examples: |`` blocks stay as they were: an untouched file keeps its bytes and a
changed one differs only by the lines added (``set_response`` by the one line it
replaces). A write that would reformat anything else is refused, not made.

Each change is a read-modify-write under an exclusive lock on
``data/.write.lock``, and every file is replaced atomically (temporary file in
the same folder, then ``os.replace``), so concurrent trainers never interleave
and a reader never sees half a file.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rasa.shared.core.constants import DEFAULT_INTENTS
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString, ScalarString

from bot.training.rasa_output import rasa_problems
from bot.training.roundtrip import (
    append,
    child,
    dump,
    exclusive_lock,
    line_changes,
    parse,
    write_atomically,
)

STUB_MARKER = "TODO:"
DATA_VERSION = "3.1"
DOMAIN_FILE = Path("domain.yml")
DATA_DIR = Path("data")
NLU_DIR = DATA_DIR / "nlu"
TRAINER_RULES = DATA_DIR / "rules" / "trainer.yml"
LOCK_FILE = DATA_DIR / ".write.lock"
VALIDATE_TIMEOUT_SECONDS = 900.0

INTENT_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_ENTITY_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# Rasa's inline entity annotation: [text](entity), [text](entity:value),
# [text]{"entity": ...} or [text][{...}, ...].
_ANNOTATION = re.compile(
    r"\[(?P<text>[^\]]+?)\](?:\((?P<entity>[^:)]+?)(?::[^)]+)?\)|\{(?P<dict>[^}]+?)\}|\[[^\]]*\])"
)
_DICT_ENTITY = re.compile(r'"entity"\s*:\s*"(?P<entity>[^"]+)"')
_PLACEHOLDER = re.compile(r"\[[a-z_]+\]")
_APOSTROPHES = re.compile(r"['’`]")
_PUNCTUATION = re.compile(r"[^\w\s]")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u2028\u2029]")
_TRAINER_RULES_HEADER = (
    f'version: "{DATA_VERSION}"\n\n'
    "# Intents added by trainers: each one is answered by its own response.\n\n"
    "rules:\n"
)


class TrainingDataError(ValueError):
    """The training data cannot be read or changed as asked; the message says why."""


@dataclass(frozen=True)
class WriteResult:
    """What a write did: examples added, examples skipped, files changed."""

    written: tuple[str, ...]
    duplicates: tuple[str, ...]
    files: tuple[Path, ...]


@dataclass(frozen=True)
class Validation:
    """The outcome of ``rasa data validate`` plus the responses still to be written."""

    ok: bool
    problems: tuple[str, ...]
    seconds: float


def example_key(text: str) -> str:
    """The form of an example used to spot duplicates: annotations reduced to their
    text, lowercase, no punctuation (placeholders such as "[card]" kept), single spaces."""
    text = _ANNOTATION.sub(lambda match: match.group("text"), text).lower()
    parts: list[str] = []
    cursor = 0
    for match in _PLACEHOLDER.finditer(text):
        parts += [_without_punctuation(text[cursor : match.start()]), f" {match.group()} "]
        cursor = match.end()
    parts.append(_without_punctuation(text[cursor:]))
    return " ".join("".join(parts).split())


def _without_punctuation(text: str) -> str:
    return _PUNCTUATION.sub(" ", _APOSTROPHES.sub("", text))


def annotate_entities(text: str, entities: Sequence[Sequence[str]]) -> str:
    """``text`` with each (entity, span) pair marked up as Rasa's "[span](entity)",
    or each (entity, span, value) as '[span]{"entity": ..., "value": ...}' (what
    the words mean, such as the digits of a misheard order number).

    Spans are matched as whole words, case-insensitively, left to right; two pairs
    with the same span mark its first and second occurrence."""
    taken: list[tuple[int, int, str]] = []
    for entity, span, *rest in entities:
        value = " ".join(rest[0].split()) if rest and rest[0].strip() else ""
        if any(char in value for char in '"\\[](){}'):
            raise TrainingDataError(f"bad value {value!r} for {entity}")
        if not _ENTITY_NAME.match(entity):
            raise TrainingDataError(f"bad entity name {entity!r}: use lowercase letters, digits, _")
        span = " ".join(span.split())
        if not span or any(char in span for char in "[](){}"):
            raise TrainingDataError(f"bad span {span!r} for {entity}: give words from the text")
        pattern = re.compile(rf"(?<![\w[]){re.escape(span)}(?![\w\]])", re.IGNORECASE)
        free = (
            match
            for match in pattern.finditer(text)
            if all(match.end() <= start or match.start() >= end for start, end, _ in taken)
        )
        found = next(free, None)
        if found is None:
            raise TrainingDataError(f"{span!r} ({entity}) is not in the text {text!r}")
        markup = (
            json.dumps({"entity": entity, "value": value}, ensure_ascii=False)
            if value
            else f"({entity})"
        )
        taken.append((found.start(), found.end(), markup))
    parts: list[str] = []
    cursor = 0
    for start, end, markup in sorted(taken):
        parts += [text[cursor:start], f"[{text[start:end]}]{markup}"]
        cursor = end
    parts.append(text[cursor:])
    return "".join(parts)


def domain_intents(project_dir: Path) -> list[str]:
    """The intents listed in the project's domain.yml, in order."""
    return _intents_of(_load(project_dir, DOMAIN_FILE)[1])


def training_examples(project_dir: Path) -> dict[str, str]:
    """Every NLU example under data/, as example_key -> intent (the first one wins)."""
    found: dict[str, str] = {}
    for _, _, data in _nlu_files(project_dir):
        for entry in _intent_entries(data):
            for text in _example_texts(entry.get("examples")):
                found.setdefault(example_key(text), str(entry["intent"]))
    return found


def add_examples(project_dir: Path, intent: str, texts: Sequence[str]) -> WriteResult:
    """Adds examples to a domain intent, skipping those already in the data.

    They go to the first data file (in path order) holding the intent, or to a new
    data/nlu/<intent>.yml when none does."""
    cleaned = _clean_texts(texts)
    with locked(project_dir):
        domain = _load(project_dir, DOMAIN_FILE)[1]
        if intent not in _intents_of(domain):
            raise TrainingDataError(
                f"unknown intent {intent!r}: domain.yml does not list it; "
                "choose one of its intents or create a new intent"
            )
        _check_entities(domain, cleaned)
        nlu = _nlu_files(project_dir)
        fresh, duplicates = _split_duplicates(nlu, cleaned)
        if not fresh:
            return WriteResult((), duplicates, ())
        path, text = _with_examples(project_dir, nlu, intent, fresh)
        _write_files(project_dir, {path: text})
    return WriteResult(fresh, duplicates, (path,))


def create_intent(
    project_dir: Path, intent: str, texts: Sequence[str], response_text: str = ""
) -> WriteResult:
    """Adds a new intent: its domain entry, a response ``utter_<intent>`` (a stub
    starting with STUB_MARKER when no text is given), its examples in
    data/nlu/<intent>.yml and a rule answering it in data/rules/trainer.yml."""
    if not INTENT_NAME.match(intent):
        raise TrainingDataError(
            f"bad intent name {intent!r}: use 2 to 64 lowercase letters, digits or _, "
            "starting with a letter"
        )
    cleaned = _clean_texts(texts)
    response = f"utter_{intent}"
    answer = _clean_text(response_text) if response_text.strip() else _stub_text(intent)
    with locked(project_dir):
        domain_text, domain = _load(project_dir, DOMAIN_FILE)
        if intent in _intents_of(domain) or intent in DEFAULT_INTENTS:
            raise TrainingDataError(f"intent {intent!r} already exists: add examples to it")
        responses = domain.get("responses")
        if isinstance(responses, dict) and response in responses:
            raise TrainingDataError(f"domain.yml already has {response}: pick another name")
        nlu = _nlu_files(project_dir)
        for path, _, data in nlu:
            if any(entry["intent"] == intent for entry in _intent_entries(data)):
                raise TrainingDataError(
                    f"{path} already has examples for {intent!r} although domain.yml does "
                    "not list it: add it to the domain by hand or pick another name"
                )
        _check_entities(domain, cleaned)
        fresh, duplicates = _split_duplicates(nlu, cleaned)
        if not fresh:
            raise TrainingDataError(
                f"every example given for {intent!r} is already in the training data: "
                "a new intent needs at least one example of its own"
            )
        append(child(domain, "intents", CommentedSeq), None, intent)
        variant = CommentedMap([("text", DoubleQuotedScalarString(answer))])
        append(child(domain, "responses", CommentedMap), response, CommentedSeq([variant]))
        nlu_path, nlu_text = _with_examples(project_dir, nlu, intent, fresh)
        changes = {
            nlu_path: nlu_text,
            TRAINER_RULES: _with_rule(project_dir, intent),
            DOMAIN_FILE: _dumped_with_additions(DOMAIN_FILE, domain_text, domain),
        }
        _write_files(project_dir, changes)
    return WriteResult(fresh, duplicates, tuple(changes))


def set_response(project_dir: Path, intent: str, text: str) -> Path:
    """Sets the first text variant of ``utter_<intent>`` in domain.yml; returns the file."""
    answer = _clean_text(text)
    name = f"utter_{intent}"
    with locked(project_dir):
        old_text, domain = _load(project_dir, DOMAIN_FILE)
        variants = (domain.get("responses") or {}).get(name)
        variant = next(
            (item for item in variants or () if isinstance(item, dict) and "text" in item), None
        )
        if variant is None:
            raise TrainingDataError(
                f"domain.yml has no text response {name}: only intents created by trainers "
                "(or with such a response) can have their answer set here"
            )
        current = variant["text"]
        if str(current) == answer:
            return DOMAIN_FILE
        variant["text"] = type(current)(answer) if isinstance(current, ScalarString) else answer
        new_text = dump(domain)
        if len(line_changes(old_text, new_text)) != 1:
            raise TrainingDataError(_layout_message(DOMAIN_FILE))
        _write_files(project_dir, {DOMAIN_FILE: new_text})
    return DOMAIN_FILE


def unfilled_stubs(project_dir: Path) -> list[str]:
    """Responses in domain.yml whose text still starts with STUB_MARKER."""
    responses = _load(project_dir, DOMAIN_FILE)[1].get("responses") or {}
    return [
        str(name)
        for name, variants in responses.items()
        if any(
            isinstance(item, dict) and str(item.get("text", "")).startswith(STUB_MARKER)
            for item in variants or ()
        )
    ]


def validate_project(
    project_dir: Path, *, timeout_seconds: float = VALIDATE_TIMEOUT_SECONDS
) -> Validation:
    """Runs ``rasa data validate`` on the project; ok when it exits with 0.

    ``problems`` holds Rasa's warnings and errors, one line each, then one line per
    response that is still a stub."""
    started = time.monotonic()
    command = [sys.executable, "-m", "rasa", "data", "validate"]
    command += ["--domain", "domain.yml", "--data", "data", "--config", "config.yml"]
    try:
        proc = subprocess.run(
            command,
            cwd=project_dir,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            capture_output=True,
            text=True,
            timeout=timeout_seconds,
            check=False,
        )
    except subprocess.TimeoutExpired:
        problems = [f"rasa data validate did not finish within {timeout_seconds:.0f} seconds"]
        ok = False
    else:
        ok = proc.returncode == 0
        problems = rasa_problems(proc.stderr) + rasa_problems(proc.stdout)
        if not ok and "\x1b[91m" not in proc.stdout + proc.stderr:  # it crashed
            last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
            problems.append(f"rasa data validate failed (exit code {proc.returncode}): {last}")
    try:
        stubs = unfilled_stubs(project_dir)
    except TrainingDataError:
        stubs = []  # Rasa has already reported why domain.yml cannot be read.
    problems += [
        f"{name}: the answer is still a stub ({STUB_MARKER}); write what the bot should say"
        for name in stubs
    ]
    return Validation(ok, tuple(dict.fromkeys(problems)), time.monotonic() - started)


def _stub_text(intent: str) -> str:
    return (
        f"{STUB_MARKER} a trainer must write what the bot says for {intent}, ending with a "
        "question such as: Is there anything else I can help you with?"
    )


def _clean_text(text: str) -> str:
    cleaned = " ".join(str(text).split())
    if not cleaned:
        raise TrainingDataError("empty text: give the words to write")
    if _CONTROL.search(cleaned):
        raise TrainingDataError(f"text {cleaned!r} holds control characters: remove them")
    return cleaned


def _clean_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TrainingDataError("give a list of examples, not one string")
    cleaned = [_clean_text(text) for text in texts]
    if not cleaned:
        raise TrainingDataError("no examples given")
    for text in cleaned:
        if not example_key(text):
            raise TrainingDataError(f"example {text!r} has no words")
    return cleaned


def _split_duplicates(
    nlu: list[tuple[Path, str, Any]], texts: list[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    known = {
        example_key(text)
        for _, _, data in nlu
        for entry in _intent_entries(data)
        for text in _example_texts(entry.get("examples"))
    }
    fresh: list[str] = []
    duplicates: list[str] = []
    for text in texts:
        key = example_key(text)
        if key in known:
            duplicates.append(text)
        else:
            known.add(key)
            fresh.append(text)
    return tuple(fresh), tuple(duplicates)


def _check_entities(domain: Any, texts: list[str]) -> None:
    entities = {str(name) for name in domain.get("entities") or ()}
    for text in texts:
        for match in _ANNOTATION.finditer(text):
            named = match.group("entity") or ""
            if match.group("dict"):
                found = _DICT_ENTITY.search("{" + match.group("dict") + "}")
                named = found.group("entity") if found else ""
            if named and named.strip() not in entities:
                raise TrainingDataError(
                    f"{text!r} marks entity {named!r}, which domain.yml does not list"
                )


def _intents_of(domain: Any) -> list[str]:
    intents = domain.get("intents") if isinstance(domain, dict) else None
    names: list[str] = []
    for item in intents or ():
        names += [str(key) for key in item] if isinstance(item, dict) else [str(item)]
    return names


def _intent_entries(data: Any) -> list[Any]:
    nlu = data.get("nlu") if isinstance(data, dict) else None
    return [entry for entry in nlu or () if isinstance(entry, dict) and "intent" in entry]


def _example_texts(examples: Any) -> list[str]:
    if isinstance(examples, str):
        lines = (line.strip() for line in examples.splitlines())
        return [line[2:].strip() for line in lines if line.startswith("- ")]
    if isinstance(examples, list):
        return [
            str(item.get("text", "")) if isinstance(item, dict) else str(item) for item in examples
        ]
    return []


def _nlu_files(project_dir: Path) -> list[tuple[Path, str, Any]]:
    """Every data file (relative path, text, round-trip data), in path order."""
    root = project_dir / DATA_DIR
    paths = sorted(
        path
        for path in root.rglob("*")
        if path.suffix in {".yml", ".yaml"} and not path.name.startswith(".") and path.is_file()
    )
    return [(rel, *_load(project_dir, rel)) for rel in (p.relative_to(project_dir) for p in paths)]


def _with_examples(
    project_dir: Path, nlu: list[tuple[Path, str, Any]], intent: str, texts: Sequence[str]
) -> tuple[Path, str]:
    """The data file that takes the new examples of ``intent``, and its new text."""
    lines = "".join(f"- {text}\n" for text in texts)
    for path, old_text, data in nlu:
        entry = next((e for e in _intent_entries(data) if e["intent"] == intent), None)
        if entry is None:
            continue
        examples = entry.get("examples")
        if isinstance(examples, list):
            for text in texts:
                append(examples, None, CommentedMap([("text", text)]))
        else:
            block = str(examples or "")
            if block and not block.endswith("\n"):  # keep a "|-" block a "|-" block
                block = f"{block}\n{lines.rstrip()}"
            else:
                block += lines
            entry["examples"] = LiteralScalarString(block)
        return path, _dumped_with_additions(path, old_text, data)
    path = NLU_DIR / f"{intent}.yml"
    new_entry = CommentedMap([("intent", intent), ("examples", LiteralScalarString(lines))])
    if not (project_dir / path).exists():
        data = parse(f'version: "{DATA_VERSION}"\n\nnlu:\n')
        data["nlu"] = CommentedSeq([new_entry])
        return path, dump(data)
    old_text, data = _load(project_dir, path)
    _append_block(child(data, "nlu", CommentedSeq), new_entry)
    return path, _dumped_with_additions(path, old_text, data)


def _with_rule(project_dir: Path, intent: str) -> str:
    """The new text of data/rules/trainer.yml with a rule answering ``intent``."""
    name = f"answer {intent}"
    steps = CommentedSeq(
        [CommentedMap([("intent", intent)]), CommentedMap([("action", f"utter_{intent}")])]
    )
    rule = CommentedMap([("rule", name), ("steps", steps)])
    if not (project_dir / TRAINER_RULES).exists():
        data = parse(_TRAINER_RULES_HEADER)
        data["rules"] = CommentedSeq([rule])
        return dump(data)
    old_text, data = _load(project_dir, TRAINER_RULES)
    rules = child(data, "rules", CommentedSeq)
    if any(isinstance(item, dict) and item.get("rule") == name for item in rules):
        raise TrainingDataError(f"{TRAINER_RULES} already has a rule {name!r}: remove it first")
    _append_block(rules, rule)
    return _dumped_with_additions(TRAINER_RULES, old_text, data)


def _load(project_dir: Path, rel: Path) -> tuple[str, Any]:
    try:
        text = (project_dir / rel).read_text(encoding="utf-8")
        return text, parse(text)
    except (OSError, UnicodeDecodeError, YAMLError) as error:
        raise TrainingDataError(f"cannot read {rel}: {error}; fix the file first") from error


def _dumped_with_additions(rel: Path, old_text: str, data: Any) -> str:
    """The new text of a file, refused if it changes more than added lines."""
    new_text = dump(data)
    if any(change != "insert" for change in line_changes(old_text, new_text)):
        raise TrainingDataError(_layout_message(rel))
    return new_text


def _layout_message(rel: Path) -> str:
    return (
        f"{rel} cannot be changed without reformatting other lines: bring it to the "
        "usual layout (two-space indents, lists indented under their key) and try again"
    )


def _append_block(items: Any, value: Any) -> None:
    """Appends a block (an NLU entry, a rule) with a blank line before it."""
    append(items, None, value, separate=bool(items))


@contextmanager
def locked(project_dir: Path) -> Iterator[None]:
    """Holds the project's data write lock (other processes wait for it)."""
    if not (project_dir / DOMAIN_FILE).is_file() or not (project_dir / DATA_DIR).is_dir():
        raise TrainingDataError(f"{project_dir} is not a Rasa project (domain.yml and data/)")
    with exclusive_lock(project_dir / LOCK_FILE):
        yield


def _write_files(project_dir: Path, contents: dict[Path, str]) -> None:
    try:
        write_atomically(project_dir, contents)
    except OSError as error:
        raise TrainingDataError(f"cannot write the training data: {error}") from error
