"""The trainers' loop through the CLI, on a private copy of the project:
callers say something the model gets wrong; the trainer finds it in the inbox,
assigns the right intent, retrains, compares, deploys, and a bot that is
already running answers new calls with the new model; rollback restores the
old behaviour."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.training_project import copy_project, project_env

# The shipped model does not understand these (nlu_fallback): near-identical
# wordings of one delivery problem, said in three calls.
POSTIE = "pretty sure someone swiped my box"
VARIANTS = (POSTIE, "uh pretty sure someone swiped my box", "pretty sure someone has swiped my box")
# The recogniser's "wan", "free" and "fife" for "one", "three" and "five" (not
# among the mishearings the NLU knows already): no order number is found.
MISHEARD = "where is my order wan two free four fife"

pytestmark = [pytest.mark.slow, pytest.mark.retrain]


class Project:
    def __init__(self, root: Path, var: Path) -> None:
        self.root = root
        self.env = project_env(root, var)
        self.log_file = Path(self.env["VOICEBOT_LOGGING_FILE"])

    def voicebot(
        self, *args: str, stdin: str = "", timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.root,
            env=self.env,
            timeout=timeout,
        )

    def json_lines(self, *args: str) -> list[dict[str, Any]]:
        done = self.voicebot(*args, "--json")
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in done.stdout.splitlines()]


class RunningBot:
    """``voicebot chat --json`` kept running: a line in, a JSON turn out."""

    def __init__(self, project: Project) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bot", "chat", "--json"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=project.root,
            env=project.env,
        )
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)

    def say(self, text: str) -> dict[str, Any]:
        assert self._process.stdin is not None
        self._process.stdin.write(text + "\n")
        self._process.stdin.flush()
        return dict(json.loads(self._lines.get(timeout=300)))

    def call(self, lines: Sequence[str]) -> list[dict[str, Any]]:
        """One whole call: the lines, then goodbye (the bot hangs up)."""
        turns = [self.say(line) for line in lines]
        goodbye = self.say("goodbye")
        assert goodbye["intent"] == "goodbye"
        return turns

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=120)


def wait_for_log(path: Path, text: str, after: int, timeout: float = 300) -> None:
    """Waits until the bot's log, past byte ``after``, mentions ``text``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and text in path.read_text(encoding="utf-8")[after:]:
            return
        time.sleep(0.5)
    raise AssertionError(f"the bot never logged {text!r}")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, dialogue_model: Path) -> Project:
    tmp = tmp_path_factory.mktemp("training-cli")
    return Project(copy_project(tmp / "project", dialogue_model), tmp / "var")


@pytest.fixture(scope="module")
def bot(project: Project) -> Iterator[RunningBot]:
    running = RunningBot(project)
    yield running
    running.close()


def test_the_trainer_fixes_a_misunderstanding_end_to_end(
    project: Project, bot: RunningBot, dialogue_model: Path
) -> None:
    shipped = dialogue_model.name.removesuffix(".tar.gz")
    for variant in VARIANTS:
        (turn,) = bot.call([variant])
        assert turn["intent"] != "delivery_problem"
    (misheard,) = bot.call([MISHEARD])
    assert misheard["intent"] == "order_status" and "order_id" not in misheard["entities"]

    # The inbox shows the three turns as one item, needing a look.
    items = project.json_lines("train", "inbox")
    item = next(i for i in items if i["text"] == POSTIE)
    assert set(item) >= {"id", "text", "reason", "predicted_intent", "confidence", "count"}
    assert item["count"] == 3 and item["reason"] == "fallback"
    assert item["predicted_intent"] == "nlu_fallback"
    assert 0 <= item["confidence"] < 0.6

    (decision, validation) = project.json_lines(
        "train", "annotate", item["id"], "--intent", "delivery_problem", "--user", "tess"
    )
    assert sorted(decision["examples"]) == sorted(VARIANTS)
    assert decision["decided_by"] == "tess" and len(decision["call_ids"]) == 3
    assert validation["validation"]["ok"], validation
    assert all(i["id"] != item["id"] for i in project.json_lines("train", "inbox", "--all"))
    written = yaml.safe_load((project.root / decision["files"][0]).read_text(encoding="utf-8"))
    block = next(e for e in written["nlu"] if e.get("intent") == "delivery_problem")
    assert all(f"- {v}\n" in block["examples"] for v in VARIANTS)

    # The misheard order number: understood well enough to be routine, so
    # the trainer searches for it and says what the words mean.
    (found,) = project.json_lines("train", "inbox", "--all", "--search", "wan two free")
    (corrected, validation) = project.json_lines(
        "train", "annotate", found["id"], "--entity", "order_id=wan two free four fife=12345",
        "--entity-intent", "order_status", "--user", "tess",
    )  # fmt: skip
    assert corrected["examples"] == [
        'where is my order [wan two free four fife]{"entity": "order_id", "value": "12345"}'
    ]
    assert validation["validation"]["ok"], validation

    # Deciding the same words again writes nothing twice.
    (again,) = bot.call(["um pretty sure someone swiped my box"])
    assert all(POSTIE not in i["text"] for i in project.json_lines("train", "inbox", "--all"))
    assert again["intent"] != "delivery_problem"

    retrained = project.voicebot("train", "retrain", "--user", "tess", "--json")
    assert retrained.returncode == 0, retrained.stderr[-3000:]
    result = json.loads(retrained.stdout)
    candidate = result["model"]
    assert candidate != shipped
    # Progress is shown (the epochs too, unless Rasa's cache had this data's model).
    assert "starting rasa train" in retrained.stderr
    assert "85.0%  model trained" in retrained.stderr
    assert result["evaluation"]["compared_with"] == shipped
    assert not result["evaluation"]["blocked"], project.voicebot("train", "evaluate").stdout

    (evaluation,) = project.json_lines("train", "evaluate")
    assert evaluation["comparison"]["candidate"] == candidate
    assert evaluation["comparison"]["production"] == shipped
    assert not evaluation["comparison"]["blocked"]
    assert "delivery_problem" in evaluation["candidate"]["per_intent"]

    models = {m["model"]: m for m in project.json_lines("train", "models")}
    assert models[shipped]["in_production"] and not models[candidate]["in_production"]
    assert models[candidate]["trained_by"] == "tess"

    log_size = project.log_file.stat().st_size
    (deployed,) = project.json_lines("train", "deploy", candidate, "--user", "tess")
    assert deployed["model"] == candidate and deployed["action"] == "deploy"
    wait_for_log(project.log_file, f"new calls now use model {candidate}", log_size)
    for variant in VARIANTS:
        (turn,) = bot.call([variant])
        assert turn["intent"] == "delivery_problem", turn
    (misheard,) = bot.call([MISHEARD])
    assert misheard["entities"].get("order_id") == "12345", misheard

    log_size = project.log_file.stat().st_size
    (rolled,) = project.json_lines("train", "rollback", "--user", "tess")
    assert rolled["model"] == shipped and rolled["action"] == "rollback"
    wait_for_log(project.log_file, f"new calls now use model {shipped}", log_size)
    (turn,) = bot.call([POSTIE])
    assert turn["intent"] != "delivery_problem"

    audit = project.json_lines("train", "decisions")
    assert [(a["item_id"], a["decision"], a["intent"]) for a in audit] == [
        (found["id"], "entities", "order_status"),
        (item["id"], "intent", "delivery_problem"),
    ]


def test_refusals_are_clear(project: Project) -> None:
    unknown = project.voicebot("train", "annotate", "u0000000000", "--discard", "--user", "tess")
    assert unknown.returncode == 2 and "no inbox item u0000000000" in unknown.stderr
    bad_intent = project.voicebot("train", "inbox", "--reason", "whatever")
    assert bad_intent.returncode == 2 and "unknown reason" in bad_intent.stderr
    missing = project.voicebot("train", "deploy", "dialogue-0000000000000000", "--user", "tess")
    assert missing.returncode == 2 and "no model dialogue-0000000000000000" in missing.stderr
    not_a_name = project.voicebot("train", "deploy", "../../etc/passwd", "--user", "tess")
    assert not_a_name.returncode == 2 and "is not a model name" in not_a_name.stderr
