"""A model's confusion matrix as a self-contained SVG heatmap.

No scripts, styles from elsewhere or fonts to fetch, so a page can show it
with ``<img src=...>`` under a strict content security policy. Right answers
(the diagonal) are green, confusions red, each shaded by its share of the
expected intent's examples, so a rare intent's mistakes show as much as a
common one's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape, quoteattr

if TYPE_CHECKING:
    from bot.training.scores import Evaluation

CELL = 28
FONT_SIZE = 12
# Average width of a character at FONT_SIZE, to make room for the labels.
CHAR_WIDTH = 7
PAD = 12
TITLE_HEIGHT = 28
AXIS_TITLE = 20

# (lightest, darkest) RGB for right and wrong answers.
_RIGHT = ((232, 245, 233), (27, 94, 32))
_WRONG = ((255, 235, 238), (183, 28, 28))
_EMPTY = "#fafafa"
_GRID = "#dddddd"


def _shade(scale: tuple[tuple[int, int, int], tuple[int, int, int]], share: float) -> str:
    light, dark = scale
    # Even one confusion in many examples should stand out from an empty cell.
    t = 0.3 + 0.7 * min(max(share, 0.0), 1.0)
    r, g, b = (round(lo + (hi - lo) * t) for lo, hi in zip(light, dark, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion_svg(evaluation: Evaluation, title: str = "") -> str:
    """The confusion matrix of ``evaluation``: expected intents down, predicted across."""
    labels = evaluation.labels
    matrix = evaluation.confusion
    n = len(labels)
    title = title or f"{evaluation.model}: accuracy {evaluation.accuracy:.3f}"
    label_room = CHAR_WIDTH * max((len(label) for label in labels), default=0) + PAD
    left = AXIS_TITLE + label_room
    top = TITLE_HEIGHT + AXIS_TITLE + label_room
    width = max(left + n * CELL + PAD, CHAR_WIDTH * len(title) + 2 * PAD)
    height = top + n * CELL + PAD

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label={quoteattr(title)} '
        f'font-family="sans-serif" font-size="{FONT_SIZE}">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{PAD}" y="{TITLE_HEIGHT - 10}" font-size="{FONT_SIZE + 2}" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<text x="{left + n * CELL / 2}" y="{TITLE_HEIGHT + 14}" '
        'text-anchor="middle" fill="#555555">predicted</text>',
        f'<text transform="translate({AXIS_TITLE - 6},{top + n * CELL / 2}) rotate(-90)" '
        'text-anchor="middle" fill="#555555">expected</text>',
    ]
    for i, label in enumerate(labels):
        text = escape(label)
        middle = i * CELL + CELL / 2 + FONT_SIZE / 3
        parts.append(f'<text x="{left - 6}" y="{top + middle}" text-anchor="end">{text}</text>')
        parts.append(
            f'<text transform="translate({left + middle},{top - 6}) rotate(-90)">{text}</text>'
        )
    for i, row in enumerate(matrix):
        row_total = sum(row)
        for j, count in enumerate(row):
            x, y = left + j * CELL, top + i * CELL
            scale = _RIGHT if i == j else _WRONG
            fill = _shade(scale, count / row_total) if count else _EMPTY
            tip = f"expected {labels[i]}, predicted {labels[j]}: {count}"
            parts.append(
                f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{fill}" '
                f'stroke="{_GRID}"><title>{escape(tip)}</title></rect>'
            )
            if count:
                dark = count / row_total > 0.5
                parts.append(
                    f'<text x="{x + CELL / 2}" y="{y + CELL / 2 + FONT_SIZE / 3}" '
                    f'text-anchor="middle" fill="{"#ffffff" if dark else "#000000"}">'
                    f"{count}</text>"
                )
    # The diagonal outlined too, for readers who cannot tell green from red
    # (not in rows of labels that were only ever predicted, like nlu_fallback).
    for i in (i for i, row in enumerate(matrix) if sum(row)):
        parts.append(
            f'<rect x="{left + i * CELL + 1}" y="{top + i * CELL + 1}" width="{CELL - 2}" '
            f'height="{CELL - 2}" fill="none" stroke="#1b5e20" stroke-width="1.5"/>'
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
