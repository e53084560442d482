"""``rasa data validate`` on copies of the project, before and after trainers' writes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.training.data_files import (
    STUB_MARKER,
    add_examples,
    create_intent,
    set_response,
    validate_project,
)
from tests.training_project import copy_rasa_files

pytestmark = pytest.mark.slow

# Rasa's own formatting that must not reach a trainer.
NOISE = re.compile(r"\x1b|\d{4}-\d\d-\d\d \d\d:\d\d|rasa\.validator|More info at|\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's domain, data and config."""
    return copy_rasa_files(tmp_path / "project")


def test_the_project_validates(project: Path) -> None:
    result = validate_project(project)
    assert result.ok, result.problems
    assert result.seconds > 0
    assert not any(STUB_MARKER in problem for problem in result.problems)
    assert not [problem for problem in result.problems if NOISE.search(problem)]


def test_project_still_validates_after_trainers_writes(project: Path) -> None:
    create_intent(
        project,
        "store_locations",
        ["where is your nearest shop", "do you have a shop in leeds", "can i visit a store"],
    )
    create_intent(
        project,
        "gift_wrap",
        ["can you gift wrap my order", "do you do gift wrapping"],
        response_text="Yes, we can gift wrap any order. Is there anything else I can help with?",
    )
    add_examples(project, "store_locations", ["is there a shop near me"])

    with_stub = validate_project(project)
    assert with_stub.ok, with_stub.problems
    about_new = [p for p in with_stub.problems if "store_locations" in p or "gift_wrap" in p]
    assert about_new == [
        f"utter_store_locations: the answer is still a stub ({STUB_MARKER}); "
        "write what the bot should say"
    ]

    set_response(project, "store_locations", "We only sell online. Anything else I can do?")
    filled = validate_project(project)
    assert filled.ok, filled.problems
    assert not [p for p in filled.problems if "store_locations" in p or "gift_wrap" in p]


def test_broken_project_fails_with_readable_problems(project: Path) -> None:
    rules = project / "data" / "rules" / "conversation.yml"
    rules.write_text(
        rules.read_text()
        + "\n  - rule: caller asks something unheard of\n    steps:\n"
        + "      - intent: no_such_intent\n      - action: action_no_such_thing\n"
    )
    result = validate_project(project)
    assert not result.ok
    assert (
        "The action 'action_no_such_thing' is used in the 'caller asks something unheard of' "
        "block, but it is not listed in the domain file. You should add it to your domain file!"
    ) in result.problems
    # Rasa only warns about an intent the domain lacks, but the trainer sees it.
    assert (
        "Issue found in 'data/rules/conversation.yml': Found intent 'no_such_intent' in "
        "stories which is not part of the domain."
    ) in result.problems
    assert "Project validation completed with errors." in result.problems
    assert not [problem for problem in result.problems if NOISE.search(problem)]


def test_unreadable_file_fails_with_its_name(project: Path) -> None:
    care = project / "data" / "nlu" / "care.yml"
    text = care.read_text()
    care.write_text(text + "  - intent: [oops\n")
    broken_line = text.count("\n") + 1
    result = validate_project(project)
    assert not result.ok
    assert any(
        problem.startswith("YamlSyntaxException: Failed to read 'data/nlu/care.yml'")
        and f"line {broken_line}," in problem
        for problem in result.problems
    ), result.problems
