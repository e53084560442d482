"""Whole text calls through `voicebot chat --json`: real model, real action server,
real demo backend. One process runs every happy path, one call each: every
conversation ends with the caller saying goodbye, which makes the bot hang up
and the next line start a new call."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ChatRun, chat_runner

pytestmark = pytest.mark.slow

TURN_KEYS = {
    "call_id",
    "user",
    "intent",
    "confidence",
    "entities",
    "bot",
    "escalated",
    "escalation_reason",
}


@dataclass(frozen=True)
class Expect:
    intent: str | None = None
    says: tuple[str, ...] = ()
    entities: dict[str, str] = field(default_factory=dict)
    escalation: str | None = None


@dataclass(frozen=True)
class Conversation:
    name: str
    turns: tuple[tuple[str, Expect], ...]


def conv(name: str, *turns: tuple[str, Expect]) -> Conversation:
    return Conversation(name, turns)


HAPPY_PATHS = [
    conv("greet", ("hello there", Expect("greet", ("how can i help",)))),
    conv(
        "order_status",
        ("where is my order", Expect("order_status", ("order number",))),
        (
            "its one two three four five",
            Expect("inform", ("shipped",), {"order_id": "12345"}),
        ),
        ("thank you", Expect("thank_you", ("you're welcome",))),
    ),
    conv(
        "unknown order gets a second chance",
        ("where is my order", Expect("order_status")),
        (
            "nine eight seven six five",
            Expect(None, ("can't find order nine eight seven six five",)),
        ),
        ("one two three four five", Expect(None, ("shipped",), {"order_id": "12345"})),
    ),
    conv(
        "delivery_problem",
        (
            "my parcel never arrived the order is two three four five six",
            Expect("delivery_problem", ("delivered",), {"order_id": "23456"}),
        ),
    ),
    conv(
        "change_address",
        ("i need to change the delivery address on my order", Expect("change_address")),
        ("three four five six seven", Expect(None, ("address",), {"order_id": "34567"})),
        (
            "twelve high street london n one two a b",
            Expect(None, ("delivered to twelve high street",)),
        ),
    ),
    conv(
        "cancel_order",
        (
            "i want to cancel order three four five six seven",
            Expect("cancel_order", ("cancel order three four five six seven",)),
        ),
        ("yes please", Expect("affirm", ("cancelled",))),
    ),
    conv(
        "return_item",
        ("i want to return something i bought", Expect("return_item", ("order number",))),
        ("two three four five six", Expect(None, ("return",), {"order_id": "23456"})),
    ),
    conv(
        "refund_status",
        (
            "where is my refund for order four five six seven eight",
            Expect("refund_status", ("refund",), {"order_id": "45678"}),
        ),
    ),
    conv(
        "billing_question",
        ("i have a question about my bill", Expect("billing_question")),
        ("order one two three four five", Expect(None, ("charged",), {"order_id": "12345"})),
    ),
    conv(
        "payment_problem",
        ("my card keeps getting declined", Expect("payment_problem", ("billing team",))),
        ("no thanks", Expect("deny", ("anything else",))),
    ),
    conv(
        "account_help",
        ("i cant log in to my account", Expect("account_help", ("email address",))),
        (
            "jane dot doe at example dot com",
            Expect(None, ("reset",), {"email": "jane.doe@example.com"}),
        ),
    ),
    conv(
        "complaint",
        ("i want to make a complaint", Expect("complaint", ("what happened",))),
        ("the courier was really rude to me at the door", Expect(None, ("your ticket number is",))),
    ),
    conv("opening_hours", ("what time are you open", Expect("opening_hours", ("eight",)))),
    conv(
        "repeat",
        ("what are your opening hours", Expect("opening_hours", ("eight in the morning",))),
        ("sorry can you repeat that", Expect("repeat", ("eight in the morning",))),
    ),
    conv(
        "bot_challenge",
        ("am i talking to a robot", Expect("bot_challenge", ("automated",))),
        ("no thats fine", Expect("deny", ("what can i help",))),
    ),
    conv(
        "inform",
        (
            "my email is jane dot doe at example dot com",
            Expect("inform", ("noted",), {"email": "jane.doe@example.com"}),
        ),
    ),
    conv("affirm", ("yes", Expect("affirm", ("what can i help",)))),
    conv(
        "out_of_scope", ("whats the weather like tomorrow", Expect("out_of_scope", ("can't help",)))
    ),
    conv(
        "request_human",
        (
            "can i speak to a real person please",
            Expect("request_human", ("transferring you",), escalation="explicit_request"),
        ),
    ),
    conv(
        "request_callback",
        ("can someone call me back later", Expect("request_callback", ("call you back",))),
        (
            "oh seven seven double oh nine oh oh one two three",
            Expect(
                None,
                ("call you back on oh seven seven oh oh, nine oh oh, one two three",),
                {"phone_number": "07700900123"},
                escalation="callback_requested",
            ),
        ),
    ),
    conv(
        "repeated_fallback",
        ("whats the weather like tomorrow", Expect("out_of_scope")),
        (
            "can you tell me a joke",
            Expect("out_of_scope", ("colleague",), escalation="repeated_fallback"),
        ),
    ),
    conv(
        "serious complaint",
        ("i want to make a complaint", Expect("complaint", ("what happened",))),
        (
            "the charger you sold me caught fire and burned my hand",
            Expect(None, ("your ticket number is", "colleague"), escalation="complaint"),
        ),
    ),
    conv(
        "caller_frustrated",
        ("your service is terrible", Expect()),
        (
            "this is useless nobody ever answers my emails",
            Expect(None, ("frustrating",), escalation="caller_frustrated"),
        ),
    ),
    conv(
        "no_progress",
        ("where is my order", Expect("order_status")),
        ("nine nine nine nine one", Expect(None, ("can't find",))),
        ("nine nine nine nine two", Expect(None, ("can't find",))),
        ("nine nine nine nine three", Expect(None, ("colleague",), escalation="no_progress")),
    ),
]


def check_turn(turn: dict, utterance: str, expect: Expect) -> None:
    assert set(turn) == TURN_KEYS
    assert turn["user"] == utterance
    if expect.intent is not None:
        assert turn["intent"] == expect.intent, turn
        assert 0.0 < turn["confidence"] <= 1.0
    said = " ".join(turn["bot"]).lower()
    for words in expect.says:
        assert words in said, turn
    for name, value in expect.entities.items():
        assert turn["entities"].get(name) == value, turn
    if expect.escalation is not None:
        assert turn["escalated"] is True, turn
        assert turn["escalation_reason"] == expect.escalation, turn


def run_conversations(tmp: Path, project_dir: Path, conversations: list[Conversation]) -> ChatRun:
    """One `voicebot chat --json` process for all the conversations, each
    followed by the caller's goodbye."""
    lines: list[str] = []
    for conversation in conversations:
        lines.extend(utterance for utterance, _ in conversation.turns)
        lines.append("goodbye")
    return chat_runner(tmp, project_dir)(lines)


@pytest.fixture(scope="module")
def happy_run(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path, dialogue_model: Path
) -> ChatRun:
    return run_conversations(tmp_path_factory.mktemp("calls"), project_dir, HAPPY_PATHS)


def test_each_conversation_is_one_call_ending_in_goodbye(happy_run: ChatRun) -> None:
    assert happy_run.returncode == 0, happy_run.stderr[-3000:]
    calls = happy_run.calls()
    assert len(calls) == len(HAPPY_PATHS)
    assert len({call[0]["call_id"] for call in calls}) == len(HAPPY_PATHS)
    for call in calls:
        if call[-1]["escalated"] and call[-1]["escalation_reason"] != "callback_requested":
            # Waiting for a person: the goodbye is heard by the agent, not the
            # bot, and ends the caller's wait.
            assert call[-1]["intent"] == "on_hold"
            assert call[-1]["bot"] == []
            continue
        assert call[-1]["intent"] == "goodbye"
        assert call[-1]["bot"] == ["Thank you for calling. Goodbye."]


@pytest.mark.parametrize("conversation", HAPPY_PATHS, ids=[c.name for c in HAPPY_PATHS])
def test_conversation(happy_run: ChatRun, conversation: Conversation) -> None:
    calls = happy_run.calls()
    index = HAPPY_PATHS.index(conversation)
    assert index < len(calls), happy_run.stderr[-3000:]
    call = calls[index]
    assert len(call) == len(conversation.turns) + 1
    for turn, (utterance, expect) in zip(call, conversation.turns, strict=False):
        check_turn(turn, utterance, expect)
    escalations = {e.escalation for _, e in conversation.turns if e.escalation}
    if not escalations:
        assert not any(turn["escalated"] for turn in call)
