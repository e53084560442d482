"""Rasa's console output reduced to the problems it reports, one line each.

``rasa data validate`` (and ``rasa train``) print Python warnings, log lines and
tracebacks of the libraries they load; a trainer needs only Rasa's own warnings
and errors, without timestamps, logger names, colours or documentation links.
"""

from __future__ import annotations

import re

# Rasa colours its warnings (93) and errors (91); Python's warnings and the
# logging lines come between them uncoloured.
_COLOURED = re.compile(r"\x1b\[9[13]m.*?(?:\x1b\[0m|\Z)", re.DOTALL)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_WARNING_HEADER = re.compile(r"^\S+:\d+: (?P<category>\w*Warning): (?P<message>.*)$")
_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?P<level>[A-Z]+)\s+\S+\s+- (?P<message>.*)$"
)
_SHOWN_WARNINGS = ("UserWarning", "FutureWarning")
_PROBLEM_LEVELS = ("WARNING", "ERROR", "CRITICAL")


def rasa_problems(output: str) -> list[str]:
    """The warnings and errors in output of the ``rasa`` command, one line each."""
    problems: list[str] = []
    current: list[str] | None = None

    def close() -> None:
        if current:
            problems.append(_one_line(current))

    plain = _COLOURED.sub(lambda match: f"\n{_ANSI.sub('', match.group(0))}\n", output)
    for raw in plain.splitlines():
        line = raw.split("\r")[-1].rstrip()
        warning, log = _WARNING_HEADER.match(line), _LOG_LINE.match(line)
        if warning:
            close()
            shown = warning["category"] in _SHOWN_WARNINGS
            current = [warning["message"]] if shown else None
        elif log:
            close()
            current = [log["message"]] if log["level"] in _PROBLEM_LEVELS else None
        elif not line or "\r" in raw:  # a blank line or a progress bar ends a message
            close()
            current = None
        elif current is not None:
            current.append(line)
        elif _is_error_line(line, output):
            current = [line]
    close()
    return problems


def _is_error_line(line: str, output: str) -> bool:
    """Whether an unprefixed line starts one of Rasa's coloured error messages."""
    return f"\x1b[91m{line}" in output


def _one_line(lines: list[str]) -> str:
    kept: list[str] = []
    quoted_source = False  # YAML errors quote the line after "line N, column M:"
    for line in lines:
        text = line.strip()
        skip = quoted_source or text.startswith(("^", "More info at", "You can use https://"))
        quoted_source = bool(re.search(r"line \d+, column \d+:$", text))
        if not skip:
            kept.append(text)
    return " ".join(" ".join(kept).split())
