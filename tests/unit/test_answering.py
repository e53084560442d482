"""A person or an answering machine, from the voice decision of each 20 ms frame."""

from __future__ import annotations

from bot.session.answering import Answered, AnsweringDetector


def feed(detector: AnsweringDetector, pattern: list[tuple[bool, int]]) -> list[Answered]:
    """``pattern``: (speech?, milliseconds) runs; the verdict after each frame."""
    verdicts = []
    for speech, ms in pattern:
        for _ in range(ms // 20):
            verdicts.append(detector.frame(speech))
    return verdicts


def test_a_short_hello_then_a_wait_is_a_person() -> None:
    detector = AnsweringDetector()
    verdicts = feed(detector, [(False, 400), (True, 600), (False, 800)])
    assert verdicts[-1] is Answered.PERSON
    # Decided at the pause, not before.
    assert verdicts.index(Answered.PERSON) * 20 == 400 + 600 + 700 - 20


def test_someone_who_waits_silently_is_a_person() -> None:
    detector = AnsweringDetector()
    verdicts = feed(detector, [(False, 3000)])
    assert verdicts.index(Answered.PERSON) * 20 == 2500 - 20


def test_a_long_greeting_is_a_machine_and_its_end_is_heard() -> None:
    detector = AnsweringDetector()
    # Sentences with short breaths between them, as a recorded greeting has.
    greeting = [(True, 1500), (False, 300), (True, 1200), (False, 200), (True, 2000)]
    assert feed(detector, greeting)[-1] is Answered.MACHINE
    assert not detector.greeting_over
    feed(detector, [(True, 300), (False, 500)])  # the beep, then quiet
    assert not detector.greeting_over
    feed(detector, [(False, 400)])
    assert detector.greeting_over
