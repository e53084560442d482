"""The post-call survey: the rating parser, one call's survey, its settings,
its event and the call store's columns (SQLite, and the real PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.call import Call, CallEngine
from bot.events import CallEnded, CallEvent, CallStarted, EndReason, SurveyAnswered
from bot.expectations import Expectation
from bot.session.survey import PostCallSurvey, SurveyStep, declines, parse_rating, question_text
from bot.settings import SettingsError, SurveySettings, load_settings
from bot.store import CallStore
from tests.queue_databases import postgres_schema

ON = SurveySettings(enabled=True, answer_seconds=5.0)


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("five", 5),
        ("Four out of five.", 4),
        ("3", 3),
        ("it was a two", 2),
        ("4/5", 4),
        ("i'd give it a one", 1),
        ("five stars!", 5),
        ("out of five, three", 3),
        ("five out of five", 5),
        ("five five", 5),
        ("  TWO  ", 2),
        ("4-star", 4),
        ("for", 4),  # a lone mishearing of "four"
        ("won", 1),
    ],
)
def test_a_rating_is_read_from_what_callers_say(text: str, score: int) -> None:
    assert parse_rating(text) == score


@pytest.mark.parametrize(
    "text",
    [
        "",
        "six",
        "0",
        "10",
        "five out of ten",
        "three or four",
        "between four and five",
        "4.5",
        "not a five",
        "it was great",
        "thanks for the help",  # "for" is a rating only on its own
        "no one helped me",
        "a good one",
    ],
)
def test_no_rating_unless_exactly_one_on_the_scale(text: str) -> None:
    assert parse_rating(text) is None


def test_a_clear_no_declines() -> None:
    assert declines("No thanks.") and declines("goodbye") and declines("no")
    assert not declines("no, five") and not declines("five")


def survey(keypad: bool = False) -> tuple[PostCallSurvey, list[CallEvent]]:
    events: list[CallEvent] = []
    call = Call(call_id="c1", listeners=[events.append], clock=lambda: 1234, turn_id=3)
    return PostCallSurvey(call, ON, EndReason.BOT_HANG_UP, keypad, now_ms=1000), events


def test_a_rating_is_thanked_and_recorded() -> None:
    run, events = survey()
    assert run.question == [ON.question]
    step = run.heard("it was a four", "voice")
    assert step == SurveyStep((ON.thanks,), 4, done=True)
    assert [e.to_dict() for e in events] == [
        {"event": "survey_answer", "t_ms": 1234, "call_id": "c1", "score": 4, "via": "voice",
         "turn_id": 3},
    ]  # fmt: skip
    # Over: later words change nothing.
    assert run.heard("five", "voice") == SurveyStep()
    assert len(events) == 1


def test_one_reask_then_a_goodbye_without_a_score() -> None:
    run, events = survey()
    assert run.heard("purple", "text") == SurveyStep((ON.reask,))
    assert run.heard("five", "voice", sure=False) == SurveyStep((ON.goodbye,), done=True)
    assert events == []
    assert run.end_reason is EndReason.BOT_HANG_UP


def test_a_no_thanks_ends_it_at_once() -> None:
    run, events = survey()
    assert run.heard("no thanks", "voice") == SurveyStep((ON.goodbye,), done=True)
    assert events == []


def test_keys_one_to_five_answer_and_others_are_not_understood() -> None:
    run, events = survey(keypad=True)
    assert run.question == [f"{ON.question} {ON.keypad_hint}"]
    assert question_text(ON, keypad=False) == ON.question
    assert run.keyed("#") is None and run.keyed("*") is None
    assert run.keyed("7") == SurveyStep((ON.reask,))
    assert run.keyed("2") == SurveyStep((ON.thanks,), 2, done=True)
    assert [(e.to_dict()["score"], e.to_dict()["via"]) for e in events] == [(2, "keypad")]
    assert run.keyed("5") is None


def test_silence_after_the_question_ends_the_survey() -> None:
    run, _ = survey()
    # The question being spoken is not silence; the clock starts when it stops.
    assert not run.silent_too_long(9000, quiet=False)
    assert not run.silent_too_long(13_990, quiet=True)
    assert run.silent_too_long(14_000, quiet=True)


def test_only_resolved_calls_are_surveyed(project_dir: Path) -> None:
    engine = CallEngine(load_settings(project_dir, env={}))  # not started: no queue, no rules
    call = Call(call_id="c2")
    assert PostCallSurvey.follows(ON, EndReason.BOT_HANG_UP, engine, call)
    assert PostCallSurvey.follows(ON, EndReason.RESOLVED, engine, call)
    for reason in (EndReason.CALLER_HANG_UP, EndReason.TRANSFERRED, EndReason.SILENCE,
                   EndReason.CALLBACK_ARRANGED, EndReason.TIME_LIMIT):  # fmt: skip
        assert not PostCallSurvey.follows(ON, reason, engine, call)
    assert not PostCallSurvey.follows(SurveySettings(), EndReason.BOT_HANG_UP, engine, call)
    # A goodbye with the call still handed to a person (a callback to make) is not resolved.
    call.escalation_reason = "callback_requested"
    assert not PostCallSurvey.follows(ON, EndReason.BOT_HANG_UP, engine, call)


def test_the_rating_grammar() -> None:
    grammar = Expectation.RATING.grammar()
    assert grammar is not None
    assert {"one", "two", "three", "four", "five", "out of five", "[unk]"} <= set(grammar)
    assert Expectation.RATING.completed_by("it was a four out of five")
    assert not Expectation.RATING.completed_by("four")  # "out of five" may follow
    assert not Expectation.RATING.number_begun("four")


def write_settings(project: Path, text: str) -> Path:
    (project / "domain.yml").write_text('version: "3.1"\n')
    (project / "voicebot.yml").write_text(text)
    return project


def test_the_survey_is_off_by_default_and_on_by_environment(tmp_path: Path) -> None:
    project = write_settings(tmp_path, "survey:\n  thanks: Cheers.\n")
    assert load_settings(project, env={}).survey.enabled is False
    settings = load_settings(project, env={"VOICEBOT_SURVEY_ENABLED": "yes"})
    assert settings.survey.enabled is True and settings.survey.thanks == "Cheers."


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"VOICEBOT_SURVEY_ENABLED": "perhaps"}, "VOICEBOT_SURVEY_ENABLED: expected true or false"),
        ({"VOICEBOT_SURVEY_ANSWER_SECONDS": "0"}, "survey.answer_seconds"),
        ({"VOICEBOT_SURVEY_ENABLED": "1", "VOICEBOT_SURVEY_QUESTION": " "}, "survey.question"),
    ],
)
def test_bad_survey_settings_are_named(tmp_path: Path, env: dict[str, str], message: str) -> None:
    project = write_settings(tmp_path, "survey:\n  enabled: false\n")
    with pytest.raises(SettingsError, match=message):
        load_settings(project, env=env)


@pytest.mark.parametrize(
    ("score", "via"), [(0, "voice"), (6, "keypad"), (3, "fax"), (True, "text")]
)
def test_a_survey_answer_out_of_range_is_refused(score: int, via: str) -> None:
    with pytest.raises(ValueError, match="survey"):
        SurveyAnswered("c1", 0, score=score, via=via)


def stored_rating(url: str) -> dict:
    store = CallStore(url, redact_after_call=False)
    try:
        store.listener(CallStarted("rated", 0, "phone"))
        store.listener(SurveyAnswered("rated", 9000, score=5, via="keypad", turn_id=2))
        store.listener(CallEnded("rated", 9500, EndReason.RESOLVED))
        store.listener(CallStarted("unrated", 0, "text"))
        store.listener(CallEnded("unrated", 800, EndReason.BOT_HANG_UP))
        store.flush()
        rated, unrated = store.call("rated"), store.call("unrated")
    finally:
        store.close()
    assert rated is not None and unrated is not None
    assert (unrated["csat_score"], unrated["csat_via"], unrated["csat_at"]) == (None, None, None)
    assert rated["end_reason"] == "resolved"
    return rated


def test_the_store_keeps_the_rating_with_the_call(tmp_path: Path) -> None:
    rated = stored_rating(f"sqlite:///{tmp_path / 'calls.sqlite3'}")
    assert (rated["csat_score"], rated["csat_via"]) == (5, "keypad")
    assert rated["csat_at"] is not None


def test_the_store_keeps_the_rating_on_postgresql() -> None:
    with postgres_schema() as database:
        rated = stored_rating(database.url)
    assert (rated["csat_score"], rated["csat_via"]) == (5, "keypad")
    assert rated["csat_at"].tzinfo is not None
