from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import astuple
from pathlib import Path

import pytest

from bot.training.evaluation import (
    Comparison,
    CrossValidation,
    Evaluation,
    EvaluationError,
    IntentScores,
    Prediction,
    cached_evaluation,
    compare,
    confusion_svg,
    load_test_set,
    score,
)
from bot.training.evaluation import test_set_hash as hash_of_test_set

SVG = "{http://www.w3.org/2000/svg}"


def predictions(pairs: list[tuple[str, str]], text_prefix: str = "example") -> list[Prediction]:
    return [
        Prediction(f"{text_prefix} {i}", expected, predicted, 0.9)
        for i, (expected, predicted) in enumerate(pairs)
    ]


# a: 2 right, 1 taken for b. b: 1 right, 1 fallback. c: 1 right.
TINY = [
    ("a", "a"),
    ("a", "a"),
    ("a", "b"),
    ("b", "b"),
    ("b", "nlu_fallback"),
    ("c", "c"),
]


def test_score_computes_precision_recall_and_f1_by_hand() -> None:
    e = score("dialogue-tiny", "0" * 16, predictions(TINY), 1.5)

    assert astuple(e.per_intent["a"]) == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert e.per_intent["b"] == IntentScores(0.5, 0.5, 0.5, 2)
    assert e.per_intent["c"] == IntentScores(1.0, 1.0, 1.0, 1)
    # Predicted only: listed with support 0, never averaged.
    assert e.per_intent["nlu_fallback"] == IntentScores(0.0, 0.0, 0.0, 0)
    assert e.accuracy == pytest.approx(4 / 6)
    assert e.macro_f1 == pytest.approx((0.8 + 0.5 + 1.0) / 3)
    assert e.weighted_f1 == pytest.approx((3 * 0.8 + 2 * 0.5 + 1 * 1.0) / 6)
    assert e.labels == ("a", "b", "c", "nlu_fallback")
    assert e.confusion == ((2, 1, 0, 0), (0, 1, 0, 1), (0, 0, 1, 0), (0, 0, 0, 0))
    assert e.model == "dialogue-tiny"
    assert e.seconds == 1.5
    assert len(e.predictions) == 6


def test_score_agrees_with_sklearn() -> None:
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    pairs = [
        (exp, pred)
        for exp, pred in zip(
            "aabbbcccddde" * 3, "abbbacccdxee" + "aabbbcccddde" + "cabbbcdcddda", strict=True
        )
    ]
    e = score("m", "h", predictions(pairs), 0.0)
    gold = [exp for exp, _ in pairs]
    predicted = [pred for _, pred in pairs]
    labels = sorted(set(gold))

    assert e.accuracy == pytest.approx(accuracy_score(gold, predicted))
    assert e.macro_f1 == pytest.approx(
        f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)
    )
    assert e.weighted_f1 == pytest.approx(
        f1_score(gold, predicted, labels=labels, average="weighted", zero_division=0)
    )
    p, r, f, s = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    for i, label in enumerate(labels):
        assert astuple(e.per_intent[label]) == pytest.approx((p[i], r[i], f[i], s[i]))
    assert "x" in e.per_intent and e.per_intent["x"].support == 0


def test_score_refuses_nothing() -> None:
    with pytest.raises(EvaluationError, match="no predictions"):
        score("m", "h", [], 0.0)


def test_evaluation_survives_a_json_round_trip() -> None:
    e = score("dialogue-tiny", "0123456789abcdef", predictions(TINY), 2.25)
    again = Evaluation.from_dict(json.loads(json.dumps(e.to_dict())))
    assert again == e
    assert isinstance(again.confusion[0], tuple)
    assert isinstance(again.per_intent["a"], IntentScores)


def test_a_malformed_evaluation_is_an_evaluation_error() -> None:
    with pytest.raises(EvaluationError, match="not a model evaluation"):
        Evaluation.from_dict({"model": "m"})


def test_comparison_and_cross_validation_survive_a_json_round_trip() -> None:
    production = score("prod", "h", predictions(TINY), 1.0)
    candidate = score("cand", "h", predictions([(e, e) for e, _ in TINY]), 1.0)
    c = compare(candidate, production, 0.01, 0.1)
    assert Comparison.from_dict(json.loads(json.dumps(c.to_dict()))) == c

    cv = CrossValidation(3, 0.9, 0.85, {"greet": IntentScores(0.9, 0.8, 0.847, 12)}, 40.0)
    assert CrossValidation.from_dict(json.loads(json.dumps(cv.to_dict()))) == cv


# Production: every example right.
PERFECT = [("a", "a")] * 10 + [("b", "b")] * 10 + [("c", "c")] * 10


def test_a_drop_in_macro_f1_blocks() -> None:
    production = score("prod", "h", predictions(PERFECT), 1.0)
    # Two of c's ten examples taken for a: accuracy and macro-F1 fall.
    worse_pairs = PERFECT[:20] + [("c", "a")] * 2 + [("c", "c")] * 8
    candidate = score("cand", "h", predictions(worse_pairs), 1.0)

    c = compare(candidate, production, max_f1_drop=0.01, max_intent_f1_drop=0.5)

    assert c.blocked
    assert c.macro_f1_delta == pytest.approx(candidate.macro_f1 - 1.0)
    assert any(r.startswith("macro-F1 falls by") and "(allowed 0.010)" in r for r in c.reasons)
    assert any(r.startswith("accuracy falls by 0.067") for r in c.reasons)
    assert [p.text for p in c.worse] == ["example 20", "example 21"]
    assert all(p.predicted == "a" for p in c.worse)
    assert c.better == ()
    # The worst intent first.
    assert c.intents[0].intent == "c"
    assert c.intents[0].production_f1 == 1.0
    assert c.intents[0].delta == pytest.approx(c.intents[0].candidate_f1 - 1.0)


def test_a_single_intent_drop_blocks_even_when_overall_scores_hold() -> None:
    # Many intents, so one intent's loss hardly moves the averages.
    big = [(f"i{k}", f"i{k}") for k in range(40) for _ in range(5)]
    production = score("prod", "h", predictions(big), 1.0)
    # i0 loses two of five examples to nlu_fallback; elsewhere nothing changes.
    changed = [("i0", "nlu_fallback")] * 2 + big[2:]
    candidate = score("cand", "h", predictions(changed), 1.0)

    c = compare(candidate, production, max_f1_drop=0.05, max_intent_f1_drop=0.1)

    assert c.blocked
    assert c.reasons == ("i0 F1 falls by 0.250 (allowed 0.100)",)
    assert c.intents[0].intent == "i0"
    assert c.intents[0].candidate_f1 == pytest.approx(0.75)
    # nlu_fallback is only ever predicted: not an intent to compare.
    assert "nlu_fallback" not in {change.intent for change in c.intents}
    assert len(c.intents) == 40


def test_changes_within_the_margin_do_not_block() -> None:
    big = [(f"i{k}", f"i{k}") for k in range(10) for _ in range(20)]
    production = score("prod", "h", predictions(big), 1.0)
    # One example of i0 taken for i4.
    candidate = score("cand", "h", predictions([("i0", "i4")] + big[1:]), 1.0)

    c = compare(candidate, production, max_f1_drop=0.01, max_intent_f1_drop=0.1)

    assert not c.blocked
    assert c.reasons == ()
    assert c.accuracy_delta == pytest.approx(-1 / 200)
    assert len(c.worse) == 1


def test_better_lists_what_the_candidate_fixed() -> None:
    production = score("prod", "h", predictions(TINY), 1.0)
    candidate = score("cand", "h", predictions([(e, e) for e, _ in TINY]), 1.0)

    c = compare(candidate, production, 0.01, 0.1)

    assert not c.blocked
    assert [(p.expected, p.predicted) for p in c.better] == [("a", "a"), ("b", "b")]
    assert c.worse == ()
    assert c.accuracy_delta == pytest.approx(2 / 6)
    assert c.intents[-1].delta > 0


def test_a_model_compared_with_itself_is_never_blocked() -> None:
    e = score("same", "h", predictions(TINY), 1.0)
    c = compare(e, e, max_f1_drop=0.0, max_intent_f1_drop=0.0)
    assert not c.blocked
    assert c.reasons == ()
    assert c.worse == () and c.better == ()
    assert all(change.delta == 0 for change in c.intents)


def test_evaluations_on_different_test_sets_are_not_compared() -> None:
    a = score("cand", "aaaa", predictions(TINY), 1.0)
    b = score("prod", "bbbb", predictions(TINY), 1.0)
    with pytest.raises(EvaluationError, match="different test sets"):
        compare(a, b, 0.01, 0.1)


def test_confusion_svg_is_well_formed_with_escaped_labels_and_counts() -> None:
    pairs = [("ask<human>", "ask<human>")] * 7 + [("ask<human>", "b&q")] * 3 + [("b&q", "b&q")]
    e = score('model "x"', "h", predictions(pairs), 1.0)

    svg = confusion_svg(e, title="candidate <new>")
    root = ET.fromstring(svg)

    assert root.tag == f"{SVG}svg"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "ask<human>" in texts and "b&q" in texts
    assert "candidate <new>" in texts
    assert {"7", "3", "1"} <= set(texts)
    assert "<human>" not in svg  # escaped, never raw markup
    assert not list(root.iter(f"{SVG}script"))
    assert "href" not in svg
    # Right answers and confusions in different colours.
    fills = {
        r.findtext(f"{SVG}title"): r.get("fill")
        for r in root.iter(f"{SVG}rect")
        if r.find(f"{SVG}title") is not None
    }
    right = fills["expected ask<human>, predicted ask<human>: 7"]
    wrong = fills["expected ask<human>, predicted b&q: 3"]
    empty = fills["expected b&q, predicted ask<human>: 0"]
    assert len({right, wrong, empty}) == 3


def test_test_set_hash_follows_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "holdout.yml"
    path.write_text('version: "3.1"\nnlu: []\n')
    first = hash_of_test_set(path)
    assert len(first) == 16
    assert hash_of_test_set(path) == first
    path.write_text('version: "3.1"\nnlu: [] \n')
    assert hash_of_test_set(path) != first


def test_load_test_set_reads_intents_and_strips_entity_markup(tmp_path: Path) -> None:
    path = tmp_path / "holdout.yml"
    path.write_text(
        'version: "3.1"\n'
        "nlu:\n"
        "  - intent: greet\n"
        "    examples: |\n"
        "      - hello there\n"
        "  - intent: order_status\n"
        "    examples: |\n"
        "      - where is order [one two three](order_number)\n"
    )
    assert sorted(load_test_set(path)) == [
        ("hello there", "greet"),
        ("where is order one two three", "order_status"),
    ]


def test_a_missing_or_empty_test_set_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(EvaluationError, match="does not exist"):
        load_test_set(tmp_path / "nothing.yml")
    empty = tmp_path / "empty.yml"
    empty.write_text('version: "3.1"\nnlu: []\n')
    with pytest.raises(EvaluationError, match="no intent examples"):
        load_test_set(empty)


def test_cached_evaluation_reads_only_a_matching_file(tmp_path: Path) -> None:
    e = score("dialogue-abc", "0123456789abcdef", predictions(TINY), 1.0)
    assert cached_evaluation(tmp_path, "dialogue-abc", e.test_set_hash) is None

    cache = tmp_path / "dialogue-abc.eval-0123456789abcdef.json"
    cache.write_text(json.dumps(e.to_dict()))
    assert cached_evaluation(tmp_path, "dialogue-abc", e.test_set_hash) == e
    assert cached_evaluation(tmp_path, "dialogue-abc", "fedcba9876543210") is None

    cache.write_text("{not json")
    assert cached_evaluation(tmp_path, "dialogue-abc", e.test_set_hash) is None
