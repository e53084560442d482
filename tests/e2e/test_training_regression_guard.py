"""The deploy gate stops a damaged model: with two intents' examples swapped in
the training data, the retrained model scores worse than production on the
held-out set, and deploying it is refused; only an admin's override passes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.test_training_cli import Project
from tests.training_project import copy_project

pytestmark = [pytest.mark.slow, pytest.mark.retrain]


def swap_intents(nlu_file: Path, first: str, second: str) -> None:
    """Gives ``first``'s examples to ``second`` and the other way round."""
    text = nlu_file.read_text(encoding="utf-8")
    assert f"- intent: {first}\n" in text and f"- intent: {second}\n" in text
    swapped = re.sub(
        rf"- intent: ({first}|{second})\n",
        lambda m: f"- intent: {second if m.group(1) == first else first}\n",
        text,
    )
    nlu_file.write_text(swapped, encoding="utf-8")


def test_a_model_trained_on_swapped_intents_cannot_be_deployed(
    tmp_path: Path, dialogue_model: Path
) -> None:
    project = Project(copy_project(tmp_path / "project", dialogue_model), tmp_path / "var")
    shipped = dialogue_model.name.removesuffix(".tar.gz")
    models = project.json_lines("train", "models")
    assert [m["model"] for m in models if m["in_production"]] == [shipped]
    swap_intents(project.root / "data/nlu/orders.yml", "order_status", "refund_status")

    retrained = project.voicebot("train", "retrain", "--user", "tess", "--json")
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    result = json.loads(retrained.stdout)
    candidate = result["model"]
    evaluation = result["evaluation"]
    print("swapped intents:", json.dumps(evaluation))  # the numbers, for the record (-s)
    assert evaluation["blocked"]
    assert evaluation["macro_f1"] < evaluation["production"]["macro_f1"] - 0.02
    reasons = " ".join(evaluation["reasons"])
    assert "order_status F1 falls" in reasons and "refund_status F1 falls" in reasons

    refused = project.voicebot("train", "deploy", candidate, "--user", "tess")
    assert refused.returncode == 3, refused.stderr
    assert "cannot be deployed" in refused.stderr and "order_status" in refused.stderr
    not_admin = project.voicebot("train", "deploy", candidate, "--user", "tess", "--override")
    assert not_admin.returncode == 2 and "only an admin" in not_admin.stderr
    assert [m["model"] for m in project.json_lines("train", "models") if m["in_production"]] == [
        shipped
    ]

    added = project.voicebot(
        "agents", "add", "boss", "--role", "admin", "--password-stdin", stdin="a long password\n"
    )
    assert added.returncode == 0, added.stderr
    (forced,) = project.json_lines("train", "deploy", candidate, "--user", "boss", "--override")
    assert forced["model"] == candidate and forced["override"] is True
    (back,) = project.json_lines("train", "rollback", "--user", "boss")
    assert back["model"] == shipped
