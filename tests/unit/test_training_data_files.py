"""Writing trainers' decisions into a copy of the project's Rasa data."""

from __future__ import annotations

import difflib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
import yaml

from bot.training.data_files import (
    STUB_MARKER,
    TrainingDataError,
    WriteResult,
    add_examples,
    annotate_entities,
    create_intent,
    domain_intents,
    example_key,
    set_response,
    training_examples,
    unfilled_stubs,
)
from bot.training.rasa_output import rasa_problems
from tests.training_project import copy_rasa_files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's domain, data and config."""
    return copy_rasa_files(tmp_path / "project")


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.name != ".write.lock"
    }


def added_lines(before: bytes, after: bytes) -> list[str]:
    """The lines ``after`` adds to ``before``; fails if it changes or drops any."""
    old = before.decode().splitlines(keepends=True)
    new = after.decode().splitlines(keepends=True)
    added: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=old, b=new).get_opcodes():
        assert tag in ("equal", "insert"), f"changed lines: {old[i1:i2]} -> {new[j1:j2]}"
        if tag == "insert":
            added += new[j1:j2]
    return added


def changed_files(before: dict[str, bytes], after: dict[str, bytes]) -> set[str]:
    return {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}


def examples_of(path: Path, intent: str) -> list[str]:
    data = yaml.safe_load(path.read_text())
    block = next(entry for entry in data["nlu"] if entry.get("intent") == intent)
    return [line[2:] for line in block["examples"].splitlines()]


def test_example_key_ignores_case_punctuation_and_annotations() -> None:
    assert example_key("  I can't   LOG-in!! ") == "i cant log in"
    assert example_key("my email is [j smith at gmail dot com](email)") == (
        "my email is j smith at gmail dot com"
    )
    assert example_key('order [one two](order_id:12) and [three]{"entity": "order_id"}') == (
        "order one two and three"
    )
    assert example_key("My card [card] was declined.") == "my card [card] was declined"
    assert example_key("card, declined") == example_key("card declined")


def test_domain_intents_are_the_domains(project: Path) -> None:
    listed = yaml.safe_load((project / "domain.yml").read_text())["intents"]
    assert domain_intents(project) == listed
    assert "order_status" in listed


def test_training_examples_cover_every_nlu_file(project: Path) -> None:
    nested = project / "data" / "nlu" / "extra"
    nested.mkdir()
    (nested / "more.yaml").write_text(
        'version: "3.1"\nnlu:\n  - intent: greet\n    examples: |\n      - well hello again\n'
    )
    (project / "data" / "nlu" / "no_nlu.yml").write_text('version: "3.1"\n')
    examples = training_examples(project)
    assert examples["wheres my order"] == "order_status"
    assert examples["well hello again"] == "greet"
    assert examples[example_key("i can't remember my password")] == "account_help"
    assert len(examples) > 1000


def test_added_examples_are_the_only_change(project: Path) -> None:
    before = snapshot(project)
    result = add_examples(
        project, "billing_question", ["  why  is my bill so high ", "can i get my bill by post"]
    )
    after = snapshot(project)
    billing = "data/nlu/billing.yml"
    assert result == WriteResult(
        ("why is my bill so high", "can i get my bill by post"), (), (Path(billing),)
    )
    assert changed_files(before, after) == {billing}
    assert added_lines(before[billing], after[billing]) == [
        "      - why is my bill so high\n",
        "      - can i get my bill by post\n",
    ]
    examples = examples_of(project / billing, "billing_question")
    assert examples[-2:] == ["why is my bill so high", "can i get my bill by post"]
    # The next intent's entry, its blank line and the file's comments are untouched.
    assert "\n\n  - intent: payment_problem\n" in after[billing].decode()


def test_duplicates_are_skipped_whatever_their_case_punctuation_or_intent(project: Path) -> None:
    before = snapshot(project)
    result = add_examples(
        project,
        "billing_question",
        [
            "i was charged twice",  # already in billing_question
            "I was CHARGED twice!",  # the same, differently written
            "Where's my order?",  # an order_status example
            "is vat included in the price",
            "is VAT included in the price?",  # twice in this call
        ],
    )
    assert result.written == ("is vat included in the price",)
    assert result.duplicates == (
        "i was charged twice",
        "I was CHARGED twice!",
        "Where's my order?",
        "is VAT included in the price?",
    )
    after = snapshot(project)
    assert changed_files(before, after) == {"data/nlu/billing.yml"}
    assert add_examples(project, "complaint", ["IS VAT INCLUDED IN THE PRICE"]) == WriteResult(
        (), ("IS VAT INCLUDED IN THE PRICE",), ()
    )
    assert snapshot(project) == after


def test_unknown_intent_and_empty_texts_are_refused(project: Path) -> None:
    before = snapshot(project)
    with pytest.raises(TrainingDataError, match="unknown intent 'store_hours'"):
        add_examples(project, "store_hours", ["when do your shops open"])
    with pytest.raises(TrainingDataError, match="empty"):
        add_examples(project, "greet", ["hello friend", "   "])
    with pytest.raises(TrainingDataError, match="no examples"):
        add_examples(project, "greet", [])
    with pytest.raises(TrainingDataError, match="no words"):
        add_examples(project, "greet", ["?!"])
    assert snapshot(project) == before


def test_examples_for_an_intent_without_data_go_to_a_new_file(project: Path) -> None:
    domain = project / "domain.yml"
    domain.write_text(
        domain.read_text().replace("  - out_of_scope\n", "  - out_of_scope\n  - hours\n")
    )
    result = add_examples(project, "hours", ["are you open on sundays"])
    assert result.files == (Path("data/nlu/hours.yml"),)
    assert (project / "data/nlu/hours.yml").read_text() == (
        'version: "3.1"\n\nnlu:\n  - intent: hours\n'
        "    examples: |\n      - are you open on sundays\n"
    )
    assert training_examples(project)["are you open on sundays"] == "hours"


def test_new_intent_gets_domain_entry_stub_rule_and_examples(project: Path) -> None:
    before = snapshot(project)
    result = create_intent(
        project, "store_locations", ["where is your nearest shop", "do you have a shop in leeds"]
    )
    after = snapshot(project)
    nlu, rules = "data/nlu/store_locations.yml", "data/rules/trainer.yml"
    assert result.written == ("where is your nearest shop", "do you have a shop in leeds")
    assert set(map(str, result.files)) == {nlu, rules, "domain.yml"}
    assert changed_files(before, after) == {nlu, rules, "domain.yml"}

    domain_added = added_lines(before["domain.yml"], after["domain.yml"])
    assert domain_added[:2] == ["  - store_locations\n", "  utter_store_locations:\n"]
    assert domain_added[2].startswith(f'    - text: "{STUB_MARKER} ')
    domain = yaml.safe_load(after["domain.yml"])
    assert domain["intents"][-1] == "store_locations"
    assert domain["responses"]["utter_store_locations"][0]["text"].startswith(STUB_MARKER)
    # The blank line before the next section stays before it.
    assert "  - store_locations\n\nentities:\n" in after["domain.yml"].decode()

    assert examples_of(project / nlu, "store_locations") == list(result.written)
    rules_text = after[rules].decode()
    assert rules_text.startswith('version: "3.1"\n\n# ')
    # Like the project's other answers (opening hours, payment problem): the
    # response is the whole answer and ends with its own follow-up question.
    assert yaml.safe_load(rules_text)["rules"] == [
        {
            "rule": "answer store_locations",
            "steps": [{"intent": "store_locations"}, {"action": "utter_store_locations"}],
        }
    ]
    assert unfilled_stubs(project) == ["utter_store_locations"]


def test_second_new_intent_only_adds_lines(project: Path) -> None:
    create_intent(project, "store_locations", ["where is your nearest shop"])
    before = snapshot(project)
    answer = "Yes, we can gift wrap any order. Is there anything else I can help you with?"
    create_intent(project, "gift_wrap", ["can you gift wrap it"], response_text=answer)
    after = snapshot(project)
    assert added_lines(before["data/rules/trainer.yml"], after["data/rules/trainer.yml"]) == [
        "\n",
        "  - rule: answer gift_wrap\n",
        "    steps:\n",
        "      - intent: gift_wrap\n",
        "      - action: utter_gift_wrap\n",
    ]
    assert added_lines(before["domain.yml"], after["domain.yml"]) == [
        "  - gift_wrap\n",
        "  utter_gift_wrap:\n",
        f'    - text: "{answer}"\n',
    ]
    assert unfilled_stubs(project) == ["utter_store_locations"]


def test_set_response_fills_the_stub(project: Path) -> None:
    create_intent(project, "store_locations", ["where is your nearest shop"])
    before = (project / "domain.yml").read_bytes()
    answer = "We sell online only, so there are no shops to visit. Anything else?"
    assert set_response(project, "store_locations", f"  {answer}  ") == Path("domain.yml")
    after = (project / "domain.yml").read_bytes()
    diff = [
        line
        for line in difflib.unified_diff(before.decode().splitlines(), after.decode().splitlines())
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert diff[1] == f'+    - text: "{answer}"'
    assert len(diff) == 2 and diff[0].startswith(f'-    - text: "{STUB_MARKER}')
    assert unfilled_stubs(project) == []
    with pytest.raises(TrainingDataError, match="no text response utter_order_status"):
        set_response(project, "order_status", "Your order is on its way.")
    with pytest.raises(TrainingDataError, match="empty"):
        set_response(project, "store_locations", " ")


@pytest.mark.parametrize(
    "name",
    ["Store", "1store", "s", "store-hours", "store hours", "x" * 65, "greet", "nlu_fallback"],
)
def test_bad_or_taken_intent_names_are_refused(project: Path, name: str) -> None:
    before = snapshot(project)
    with pytest.raises(TrainingDataError, match=repr(name)):
        create_intent(project, name, ["a brand new example sentence"])
    assert snapshot(project) == before


def test_new_intent_needs_an_example_of_its_own(project: Path) -> None:
    before = snapshot(project)
    with pytest.raises(TrainingDataError, match="at least one example"):
        create_intent(project, "parcel_where", ["Where's my order?", "wheres my order"])
    assert snapshot(project) == before


def test_annotate_entities() -> None:
    assert annotate_entities(
        "my order is one two three four five", [("order_id", "one two three four five")]
    ) == ("my order is [one two three four five](order_id)")
    assert (
        annotate_entities(
            "call me on oh seven seven or email jo at example dot com",
            [("email", "jo at example dot com"), ("phone_number", "oh seven seven")],
        )
        == "call me on [oh seven seven](phone_number) or email [jo at example dot com](email)"
    )
    assert annotate_entities("order one and order one", [("order_id", "one")] * 2) == (
        "order [one](order_id) and order [one](order_id)"
    )
    with pytest.raises(TrainingDataError, match="not in the text"):
        annotate_entities("my order is late", [("order_id", "one two")])
    with pytest.raises(TrainingDataError, match="not in the text"):
        annotate_entities("my card [card] is late", [("email", "card"), ("email", "card")])


def test_annotated_examples_need_domain_entities(project: Path) -> None:
    text = annotate_entities("the order one two three four five", [("order_id", "one two")])
    assert add_examples(project, "order_status", [text]).written == (text,)
    assert training_examples(project)["the order one two three four five"] == "order_status"
    with pytest.raises(TrainingDataError, match="'colour'"):
        add_examples(project, "order_status", ["i want the [red](colour) one"])


def test_unreadable_file_is_reported(project: Path) -> None:
    care = project / "data" / "nlu" / "care.yml"
    care.write_text(care.read_text() + "  - intent: [oops\n")
    with pytest.raises(TrainingDataError, match="data/nlu/care.yml"):
        add_examples(project, "greet", ["hello from the new test"])


def test_comment_between_entries_stays_above_its_entry(project: Path) -> None:
    extra = project / "data" / "nlu" / "zz_extra.yml"
    original = (
        'version: "3.1"\n\nnlu:\n  - intent: inform\n    examples: |\n      - first line here\n'
        "\n  # Comment about the next intent.\n  - intent: repeat\n    examples: |\n"
        "      - say what again\n"
    )
    extra.write_text(original)
    (project / "data" / "nlu" / "conversation.yml").unlink()
    add_examples(project, "inform", ["second line here"])
    assert extra.read_text() == original.replace(
        "- first line here\n", "- first line here\n      - second line here\n"
    )


def test_file_in_another_layout_is_refused_not_reformatted(project: Path) -> None:
    odd = project / "data" / "nlu" / "conversation.yml"
    odd.write_text("nlu:\n- intent: greet\n  examples: |\n    - hello\n")
    with pytest.raises(TrainingDataError, match="layout"):
        add_examples(project, "greet", ["hello from the odd file"])
    assert odd.read_text() == "nlu:\n- intent: greet\n  examples: |\n    - hello\n"


def _add_batch(project: Path, batch: int) -> tuple[str, ...]:
    texts = [f"batch {batch} line {line} about my bill" for line in range(5)]
    return add_examples(project, "billing_question", texts).written


def test_concurrent_writers_never_lose_each_others_lines(project: Path) -> None:
    before = (project / "data/nlu/billing.yml").read_bytes()
    with ProcessPoolExecutor(max_workers=4) as pool:
        written = [
            text for batch in pool.map(_add_batch, [project] * 8, range(8)) for text in batch
        ]
    after = (project / "data/nlu/billing.yml").read_bytes()
    assert len(written) == 40
    assert sorted(added_lines(before, after)) == sorted(f"      - {text}\n" for text in written)
    assert not list(project.rglob("*.tmp"))


def test_rasa_output_is_reduced_to_readable_problems() -> None:
    output = (
        "/venv/rasa/core/tracker_store.py:1044: MovedIn20Warning: Deprecated API features\n"
        "  Base: DeclarativeMeta = declarative_base()\n"
        "2026-11-27 23:55:06 INFO     rasa.validator  - Validating intents...\n"
        "\x1b[93m/venv/rasa/shared/utils/io.py:100: UserWarning: Issue found in "
        "'data/rules/a.yml': \nFound intent 'nope' in stories which is not part of the domain.\n"
        "  More info at https://rasa.com/docs/rasa/stories\n\x1b[0m"
        "2026-11-27 23:55:06 WARNING  rasa.validator  - Story structure conflict after intent "
        "'greet':\n  utter_a predicted in 'x'\n"
        "\rProcessed story blocks: 100%|##| 4/4\n"
        "\x1b[91mProject validation completed with errors.\x1b[0m\n"
    )
    assert rasa_problems(output) == [
        "Issue found in 'data/rules/a.yml': Found intent 'nope' in stories which is not part "
        "of the domain.",
        "Story structure conflict after intent 'greet': utter_a predicted in 'x'",
        "Project validation completed with errors.",
    ]
