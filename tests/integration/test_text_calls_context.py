"""Text calls for the callers who used to be stranded: no order number, a
second question, numbers of other shapes and misheard digits, new wordings,
a plain no, and a caller who keeps typing while an agent has the call.

Real trained model, real action server, real demo backend.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import ChatRun, chat_runner
from tests.integration.test_text_calls import (
    Conversation,
    Expect,
    check_turn,
    conv,
    run_conversations,
)

pytestmark = pytest.mark.slow

# Each ends with the caller's "goodbye", appended by the run.
CONVERSATIONS = [
    conv(
        "no order number: found by e-mail, picked by item",
        ("where is my order", Expect("order_status", ("order number",))),
        ("i dont know it", Expect("dont_know", ("email address or phone number",))),
        (
            "its priya dot shah at example dot com",
            Expect(None, ("found these orders", "the kettle", "which one")),
        ),
        ("the kettle", Expect(None, ("order eight one two three four was shipped",))),
    ),
    conv(
        "no order number: found by phone, one order",
        ("has my parcel shipped", Expect("order_status")),
        ("i really dont remember it", Expect("dont_know", ("email address or phone number",))),
        (
            "oh seven seven double oh nine oh oh three two one",
            Expect(None, ("found one order", "garden hose", "shipped with evri")),
        ),
    ),
    conv(
        "a second question with its number after another task",
        ("cancel order three four five six seven", Expect("cancel_order", ("confirm",))),
        ("yes", Expect("affirm", ("is cancelled",))),
        (
            "where is order three four five six seven",
            Expect("order_status", ("was cancelled", "refund"), {"order_id": "34567"}),
        ),
    ),
    conv(
        "task and a long number in one breath",
        (
            "cancel my order it is one two three four five six seven eight",
            Expect(
                "cancel_order",
                ("i heard one two three four five six seven eight", "five digits"),
            ),
        ),
        ("its one two three four five", Expect(None, ("can't be cancelled",))),
    ),
    conv(
        "a bare number: the bot asks what to do with it",
        (
            "two three four five six",
            Expect("inform", ("what would you like to do with it",), {"order_id": "23456"}),
        ),
        ("can i return it", Expect("return_item", ("started a return",))),
    ),
    conv(
        "a reference of another shape is read back",
        (
            "its one one two two three three four four",
            Expect(None, ("i heard one one two two three three four four", "five digits")),
        ),
    ),
    conv(
        "misheard digits inside a number",
        (
            "where is order one two three for five",
            Expect("order_status", ("shipped",), {"order_id": "12345"}),
        ),
    ),
    conv(
        "invoice wording",
        ("i need a copy of my invoice", Expect("billing_question", ("order number",))),
        ("one two three four five", Expect(None, ("we charged",))),
    ),
    conv(
        "file a claim wording",
        ("i want to file a claim about a broken item", Expect("complaint", ("what happened",))),
    ),
    conv(
        "another world's request is told what this line does",
        ("can you book me a flight to madrid", Expect("out_of_scope", ("can't help",))),
    ),
    conv(
        "a plain no is never a hang-up unless the bot asked anything else",
        ("hello", Expect("greet")),
        ("no", Expect("deny", ("anything i can help you with",))),
    ),
]


@pytest.fixture(scope="module")
def context_run(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path, dialogue_model: Path
) -> ChatRun:
    return run_conversations(tmp_path_factory.mktemp("calls"), project_dir, CONVERSATIONS)


def test_every_caller_is_one_call_that_only_they_end(context_run: ChatRun) -> None:
    assert context_run.returncode == 0, context_run.stderr[-3000:]
    calls = context_run.calls()
    assert len(calls) == len(CONVERSATIONS)
    for call in calls:
        assert call[-1]["intent"] == "goodbye"
        assert call[-1]["bot"] == ["Thank you for calling. Goodbye."]
        for turn in call[:-1]:
            assert "goodbye" not in " ".join(turn["bot"]).lower(), turn


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=[c.name for c in CONVERSATIONS])
def test_conversation(context_run: ChatRun, conversation: Conversation) -> None:
    call = context_run.calls()[CONVERSATIONS.index(conversation)]
    assert len(call) == len(conversation.turns) + 1
    for turn, (utterance, expect) in zip(call, conversation.turns, strict=False):
        check_turn(turn, utterance, expect)
    assert not any(turn["escalated"] for turn in call)


def test_no_number_and_no_account_goes_to_a_person_and_waits_quietly(
    tmp_path: Path, project_dir: Path, dialogue_model: Path
) -> None:
    run = chat_runner(tmp_path, project_dir)(
        [
            "where is my order",
            "i dont know",
            "i dont know that either",
            "hello is anyone there",
            "my order was a kettle",
        ]
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (call,) = run.calls()
    handed = call[2]
    assert handed["escalated"] and handed["escalation_reason"] == "no_progress"
    assert "colleague" in " ".join(handed["bot"]).lower()
    # On hold: the bot stays quiet and the words are kept for the agent.
    for turn in call[3:]:
        assert turn["intent"] == "on_hold" and turn["bot"] == [], turn

    from bot.store import CallStore

    store = CallStore(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    try:
        stored = store.turns(call[0]["call_id"])
    finally:
        store.close()
    on_hold = [t for t in stored if t["intent"] == "on_hold"]
    assert [t["transcript"] for t in on_hold] == ["hello is anyone there", "my order was a kettle"]


def test_a_waiting_text_caller_hears_the_agent_and_is_let_go(call_engine) -> None:  # type: ignore[no-untyped-def]
    """The agent joins, types to the caller and resolves the call; the caller's
    own lines meanwhile reach the agent, never the dialogue."""
    from bot.chat import TextCall

    queue = call_engine.queue
    agent = queue.add_agent(f"sam{time.monotonic_ns()}", "pw", skills=["general", "orders"])

    async def call() -> list:
        text_call = TextCall(call_engine)
        results = [await text_call.say("i want to speak to a person")]
        assert text_call.on_hold
        item_id = text_call.call.queue_item_id
        results.append(await text_call.say("hello are you there"))
        assert queue.claim(item_id, agent.id) is not None
        queue.send_to_caller(text_call.call.call_id, agent.id, "Hi, this is Sam. How can I help?")
        results.append(await text_call.say("my kettle never came"))
        queue.resolve(item_id, agent.id, "resolved")
        results.append(await text_call.say("thanks"))
        return results

    asked, waiting, answered, done = asyncio.run(call())
    assert asked.escalation_reason == "explicit_request" and asked.bot
    assert waiting.intent == "on_hold" and waiting.bot == () and not waiting.hang_up
    assert "Hi, this is Sam. How can I help?" in answered.bot
    assert any("picked up your call" in text for text in answered.bot)
    assert done.hang_up and done.end_reason == "resolved"
    assert any("has finished with your call" in text for text in done.bot)


def test_every_no_number_phrase_of_the_voice_grammar_offers_the_account_search(
    tmp_path: Path, project_dir: Path, dialogue_model: Path
) -> None:
    """A voice caller at the order question speaks inside a small grammar: each
    of its "I haven't got it" phrases must lead to the search by account."""
    from bot.expectations import Expectation

    phrases = [
        phrase
        for phrase in Expectation.ORDER_ID.grammar() or []
        if " " in phrase or phrase == "no"
        if phrase not in {"speak to a person", "repeat that", "say that again", "goodbye"}
    ]
    assert "i don't have it" in phrases and "no idea" in phrases
    lines: list[str] = []
    for phrase in phrases:
        lines += ["where is my order", phrase, "goodbye"]
    run = chat_runner(tmp_path, project_dir)(lines)
    assert run.returncode == 0, run.stderr[-3000:]
    calls = run.calls()
    assert len(calls) == len(phrases)
    for phrase, call in zip(phrases, calls, strict=True):
        assert "email address or phone number" in " ".join(call[1]["bot"]).lower(), (phrase, call)


def test_a_text_caller_sent_back_to_the_bot_stays_with_it(call_engine) -> None:  # type: ignore[no-untyped-def]
    from bot.chat import TextCall

    queue = call_engine.queue
    agent = queue.add_agent(f"alex{time.monotonic_ns()}", "pw", skills=["general", "orders"])

    async def call() -> list:
        text_call = TextCall(call_engine)
        await text_call.say("put me through to a person please")
        item_id = text_call.call.queue_item_id
        assert queue.claim(item_id, agent.id) is not None
        queue.return_to_bot(item_id, agent.id)
        results = [await text_call.say("hello")]
        results.append(await text_call.say("where is order one two three four five"))
        results.append(await text_call.say("and where is order six seven eight nine oh"))
        assert not text_call.on_hold
        await text_call.hang_up("caller_hang_up")
        return results

    back, first, second = asyncio.run(call())
    assert any("back with you" in text for text in back.bot)
    assert first.intent == "order_status" and "shipped" in " ".join(first.bot)
    assert second.intent != "on_hold" and "running late" in " ".join(second.bot)


def test_a_text_caller_who_leaves_the_queue_is_an_abandoned_call(call_engine) -> None:  # type: ignore[no-untyped-def]
    from bot.chat import TextCall

    queue = call_engine.queue

    async def call() -> int:
        text_call = TextCall(call_engine)
        await text_call.say("i want to talk to a human")
        assert text_call.on_hold
        await text_call.hang_up("caller_hang_up")
        return text_call.call.queue_item_id

    item = queue.item(asyncio.run(call()))
    assert item is not None and item.status == "abandoned"
