"""Scoring real Rasa models: the shipped one on the held-out set, and a
cross-validation of a small project trained here."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bot.training.evaluation import (
    EvaluationError,
    compare,
    confusion_svg,
    cross_validate,
    evaluate_models,
    load_test_set,
)
from bot.training.evaluation import test_set_hash as hash_of_test_set

pytestmark = pytest.mark.slow

# The shipped model scores about 0.96 on the held-out set.
ACCURACY_FLOOR = 0.95


@pytest.fixture
def models_dir(tmp_path: Path, dialogue_model: Path) -> Path:
    """A models folder holding the shipped model, so cache files stay out of the project."""
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / dialogue_model.name).symlink_to(dialogue_model)
    return folder


def test_the_shipped_model_is_scored_once_and_then_read_from_the_cache(
    models_dir: Path, dialogue_model: Path, project_dir: Path
) -> None:
    test_set = project_dir / "tests" / "nlu" / "holdout.yml"
    name = dialogue_model.name.removesuffix(".tar.gz")
    stages: list[tuple[str, float]] = []

    first = evaluate_models(
        models_dir, [name], test_set, progress=lambda s, f: stages.append((s, f))
    )[name]

    examples = load_test_set(test_set)
    assert first.model == name
    assert first.test_set_hash == hash_of_test_set(test_set)
    assert first.accuracy >= ACCURACY_FLOOR
    assert first.macro_f1 >= ACCURACY_FLOOR - 0.05
    assert [(p.text, p.expected) for p in first.predictions] == examples
    assert {intent for _, intent in examples} <= set(first.per_intent)
    assert sum(map(sum, first.confusion)) == len(examples)
    # Progress climbs from loading to the last example.
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions)
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert any(s.endswith(f"{len(examples)}/{len(examples)} examples") for s, _ in stages)

    cache = models_dir / f"{name}.eval-{first.test_set_hash}.json"
    assert cache.is_file()
    assert not [p for p in models_dir.iterdir() if p.name.endswith(".tmp")]
    written = cache.stat().st_mtime_ns

    stages.clear()
    second = evaluate_models(
        models_dir, [f"{name}.tar.gz"], test_set, progress=lambda s, f: stages.append((s, f))
    )[name]
    assert second == first
    assert cache.stat().st_mtime_ns == written
    assert stages == [(f"{name}: scores already known", 1.0)]

    comparison = compare(second, first, max_f1_drop=0.0, max_intent_f1_drop=0.0)
    assert not comparison.blocked
    assert comparison.worse == () and comparison.better == ()

    svg = ET.fromstring(confusion_svg(first))
    assert svg.tag == "{http://www.w3.org/2000/svg}svg"


class Cancelled(Exception):
    pass


def test_a_progress_callback_that_raises_stops_the_scoring(
    models_dir: Path, dialogue_model: Path, project_dir: Path
) -> None:
    def cancel(stage: str, fraction: float) -> None:
        if "examples" in stage:
            raise Cancelled(stage)

    name = dialogue_model.name.removesuffix(".tar.gz")
    with pytest.raises(Cancelled, match="0/"):
        evaluate_models(models_dir, [name], project_dir / "tests/nlu/holdout.yml", cancel)

    # Neither a cache file nor a half-written one is left behind.
    assert [p.name for p in models_dir.iterdir()] == [dialogue_model.name]


def test_a_broken_model_fails_with_the_childs_error(tmp_path: Path, project_dir: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "dialogue-broken.tar.gz").write_bytes(b"not a model archive")

    with pytest.raises(EvaluationError) as failure:
        evaluate_models(models, ["dialogue-broken"], project_dir / "tests" / "nlu" / "holdout.yml")

    message = str(failure.value)
    assert "scoring dialogue-broken failed" in message
    assert "cannot load model" in message  # the child's own error, from its stderr
    assert [p.name for p in models.iterdir()] == ["dialogue-broken.tar.gz"]


def test_a_missing_model_is_named(tmp_path: Path, project_dir: Path) -> None:
    with pytest.raises(EvaluationError, match="dialogue-nothing.tar.gz does not exist"):
        evaluate_models(tmp_path, ["dialogue-nothing"], project_dir / "tests/nlu/holdout.yml")


INTENTS = {
    "greet": ["hello", "hi", "good morning", "hey there", "hiya", "morning",
              "hello hello", "hi hi", "good evening", "hey", "howdy", "greetings"],
    "goodbye": ["bye", "goodbye", "see you", "bye bye", "see you later", "cheers bye",
                "good night", "farewell", "talk later", "ta ra", "so long", "ciao"],
    "order_status": ["where is my order", "order status", "has my order shipped",
                     "track my order", "where is my parcel", "when will my order come",
                     "is my order on the way", "order tracking", "my parcel is late",
                     "where is my package", "delivery status", "has my parcel shipped"],
    "refund": ["i want a refund", "refund please", "money back", "give me a refund",
               "refund my order", "i want my money back", "can i get a refund",
               "refund status", "return for refund", "where is my refund",
               "request a refund", "has my refund come"],
}  # fmt: skip


def small_project(project: Path) -> Path:
    """Four intents of twelve examples and a classifier of five epochs."""
    (project / "data").mkdir(parents=True)
    (project / "config.yml").write_text(
        "recipe: default.v1\n"
        "language: en\n"
        "assistant_id: cross-validation-test\n"
        "pipeline:\n"
        "  - name: WhitespaceTokenizer\n"
        "  - name: CountVectorsFeaturizer\n"
        "  - name: DIETClassifier\n"
        "    epochs: 5\n"
        # Without transformer layers TensorFlow builds its graph in seconds.
        "    number_of_transformer_layers: 0\n"
        "    entity_recognition: false\n"
        "    random_seed: 1\n"
        "policies: []\n"
    )
    blocks = "".join(
        f"  - intent: {intent}\n    examples: |\n" + "".join(f"      - {text}\n" for text in texts)
        for intent, texts in INTENTS.items()
    )
    (project / "data" / "nlu.yml").write_text(f'version: "3.1"\nnlu:\n{blocks}')
    (project / "domain.yml").write_text(
        'version: "3.1"\nintents:\n' + "".join(f"  - {intent}\n" for intent in INTENTS)
    )
    return project


def test_cross_validation_of_a_small_project(tmp_path: Path) -> None:
    project = small_project(tmp_path / "project")
    out = tmp_path / "results"

    result = cross_validate(project, folds=2, out_dir=out)

    assert result.folds == 2
    assert set(result.per_intent) == set(INTENTS)
    # Every example is tested once, in the fold that did not train on it.
    assert all(s.support == 12 for s in result.per_intent.values())
    # Accuracy is the share of examples whose intent was recalled.
    assert result.accuracy == pytest.approx(
        sum(s.recall * s.support for s in result.per_intent.values()) / 48
    )
    assert 0.0 <= result.macro_f1 <= 1.0
    assert result.macro_f1 == pytest.approx(
        sum(s.f1 for s in result.per_intent.values()) / len(INTENTS)
    )
    assert (out / "intent_report.json").is_file()


def test_cross_validation_of_broken_data_says_so(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "config.yml").write_text("language: en\npipeline: []\n")
    (project / "data" / "nlu.yml").write_text("nlu: [this is not: valid\n")

    with pytest.raises(EvaluationError, match="cross-validation failed"):
        cross_validate(project, folds=2, out_dir=tmp_path / "results")


def test_cross_validation_runs_as_a_recorded_job(tmp_path: Path) -> None:
    from bot.settings import load_settings
    from bot.training.service import TrainingWorkflow, cross_validation_job
    from tests.conftest import isolated_env

    project = small_project(tmp_path / "project")
    settings = load_settings(project, env=isolated_env(tmp_path / "var"))
    workflow = TrainingWorkflow(settings)
    try:
        job = workflow.jobs.run("cross_validate", "tess", cross_validation_job(workflow, 2))
    finally:
        workflow.close()
    assert job.state == "succeeded" and job.kind == "cross_validate"
    assert job.result is not None and job.result["folds"] == 2
    assert set(job.result["per_intent"]) == set(INTENTS)
