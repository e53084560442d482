"""The call page's view of a handoff package as the call engine writes it."""

from __future__ import annotations

from bot.console.views import _intents
from bot.handoff import build_handoff


def test_handoff_intents_show_their_names_and_confidences() -> None:
    handoff = build_handoff(
        "call-1",
        "explicit_request",
        2,
        "orders",
        [
            {"intent": "order_status", "confidence": 0.412},
            {"intent": "request_human", "confidence": 1.0},
        ],
        [],
        {},
    )
    assert _intents(handoff.to_dict()["intents"]) == [
        ("order_status", "41%"),
        ("request_human", "100%"),
    ]


def test_intents_in_rasas_own_shape_and_as_a_mapping_still_show() -> None:
    assert _intents([{"name": "greet", "confidence": 0.5}]) == [("greet", "50%")]
    assert _intents({"deny": 0.25}) == [("deny", "25%")]
