"""The console's trainer pages over real HTTP: uvicorn on 127.0.0.1 serving a
copy of the Rasa project (its data files are written by the decisions), the
shipped dialogue model, and a call store filled through the bot's own events;
driven with the standard library's HTTP client (redirects not followed,
cookies kept like a browser's)."""

from __future__ import annotations

import hashlib
import http.cookiejar
import json
import os
import re
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.console import ConsoleServer, ConsoleSettings
from bot.events import BotTurn, CallEnded, CallStarted, Escalated, TranscriptFinal
from bot.queue import AgentQueue, QueueSettings
from bot.settings import Settings, load_settings
from bot.store import CallStore
from bot.training.evaluation import cached_evaluation, score
from bot.training.evaluation import test_set_hash as hash_of_test_set
from bot.training.schema import jobs
from bot.training.service import TrainingWorkflow
from tests.training_project import copy_rasa_files
from tests.web_client import KeepRedirects, Reply

pytestmark = pytest.mark.slow

PASSWORDS = {"ann": "ann-secret", "tom": "tom-secret", "ada": "ada-secret", "sue": "sue-secret"}
# The shipped model under another name: the same bytes, so the same scores.
IDENTICAL = "dialogue-1dea1dea1dea1dea"
# A model whose scores are made up (worse than production's); never loaded.
WORSE = "dialogue-badbadbadbadbad0"
PARCEL = "has my parcel gone walkabout"
# (what the caller said, intent, intent confidence, speech confidence, escalated)
CALLER_TURNS = (
    (PARCEL, "order_status", 0.41, 0.9, False),
    ("uh has my parcel gone walkabout", "nlu_fallback", 0.3, 0.8, True),
    ("has my parcel gone walkabout please", "order_status", 0.52, 0.9, False),
    ("has my parcel gone walkabout again", "order_status", 0.38, 0.7, False),
    ("the moon is made of cheese", "nlu_fallback", 0.2, 0.9, True),
    ("hello there", "greet", 0.98, 0.95, False),
    ("can i book a tour of the warehouse", "nlu_fallback", 0.25, 0.85, False),
)
JOB_DEADLINE_SECONDS = 900


class WebClient:
    """One browser's worth of cookies against the console."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()), KeepRedirects
        )
        self.token = ""

    def _send(self, path: str, data: bytes | None) -> Reply:
        try:
            response = self._opener.open(self.base_url + path, data, timeout=120)
        except urllib.error.HTTPError as refused:
            response = refused
        with response:
            return Reply(response.status, response.headers, response.read().decode())

    def get(self, path: str) -> Reply:
        return self._send(path, None)

    def post(self, path: str, form: Mapping[str, str | Sequence[str]], csrf: bool = True) -> Reply:
        fields = {"csrf_token": self.token, **form} if csrf else form
        return self._send(path, urllib.parse.urlencode(fields, doseq=True).encode())

    def log_in(self, name: str) -> None:
        login_token = _field(self.get("/login").body, "csrf_token")
        form = {"name": name, "password": PASSWORDS[name], "csrf_token": login_token}
        assert self.post("/login", form, csrf=False).status == 303
        home = self.get(self.get("/").location)
        match = re.search(r'<meta name="csrf-token" content="([^"]+)"', home.body)
        assert match, home.body
        self.token = match.group(1)


def _field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in {html}"
    return match.group(1)


def _rows(html: str, attribute: str) -> dict[str, str]:
    """Table rows by the value of their ``data-*`` attribute: the row's HTML."""
    found = re.findall(rf'<tr {attribute}="([^"]+)"([^>]*>.*?)</tr>', html, re.DOTALL)
    return dict(found)


def _cells(row: str) -> list[str]:
    return [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.DOTALL)
    ]


def _assert_local_only(page: Reply) -> None:
    assert "script-src 'self'" in page.headers.get("content-security-policy", "")
    assert "<script>" not in page.body and " style=" not in page.body
    for url in re.findall(r'(?:src|href|action)="([^"]*)"', page.body):
        assert url.startswith(("/", "#")), url


def _data_digest(project: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((project / "data").rglob("*.yml")):
        digest.update(path.read_bytes())
    return digest.hexdigest() + hashlib.sha256((project / "domain.yml").read_bytes()).hexdigest()


@dataclass
class Trainers:
    url: str
    settings: Settings

    def client(self, name: str) -> WebClient:
        client = WebClient(self.url)
        client.log_in(name)
        return client

    def production(self) -> str:
        workflow = TrainingWorkflow(self.settings)
        try:
            return workflow.production_name()
        finally:
            workflow.close()

    def wait_for_job(self, client: WebClient, job_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + JOB_DEADLINE_SECONDS
        while True:
            reply = client.get(f"/training/jobs/{job_id}.json")
            assert reply.status == 200, reply.body
            assert reply.headers.get("content-type") == "application/json"
            job: dict[str, Any] = json.loads(reply.body)
            if job["state"] != "running" or time.monotonic() > deadline:
                return job
            time.sleep(0.5)


def _copy_project(source: Path, target: Path, shipped_model: Path) -> None:
    """The Rasa project's files, with the custom NLU code (part of the data's
    fingerprint) and the shipped model, so the copy's data matches that model."""
    copy_rasa_files(target)
    for name in ("endpoints.yml", "credentials.yml"):
        shutil.copy2(source / name, target / name)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(source / "actions", target / "actions", ignore=ignore)
    shutil.copytree(source / "bot" / "nlu", target / "bot" / "nlu", ignore=ignore)
    models = target / "models"
    models.mkdir()
    (models / shipped_model.name).symlink_to(shipped_model)
    shutil.copy2(shipped_model.with_name(_name(shipped_model) + ".json"), models)
    shutil.copyfile(shipped_model, models / f"{IDENTICAL}.tar.gz")
    (models / f"{WORSE}.tar.gz").symlink_to(shipped_model)


def _name(model: Path) -> str:
    return model.name.removesuffix(".tar.gz")


def _fill_call_store(url: str) -> None:
    store = CallStore(url)
    try:
        for number, (text, intent, confidence, asr, escalated) in enumerate(CALLER_TURNS):
            call_id = f"call-{number}"
            store.listener(CallStarted(call_id, 0, "voice"))
            store.listener(TranscriptFinal(call_id, 1500, text=text, confidence=asr))
            store.listener(
                BotTurn(call_id, 1600, user=text, intent=intent, confidence=confidence,
                        bot=("Sorry, could you say that again?",))
            )  # fmt: skip
            if escalated:
                store.listener(Escalated(call_id, 1700, reason="repeated_fallback"))
            store.listener(CallEnded(call_id, 2000))
        store.flush()
    finally:
        store.close()


@pytest.fixture(scope="module")
def shipped(dialogue_model: Path) -> str:
    return _name(dialogue_model)


@pytest.fixture(scope="module")
def trainers(
    tmp_path_factory: pytest.TempPathFactory, project_dir: Path, dialogue_model: Path
) -> Iterator[Trainers]:
    tmp = tmp_path_factory.mktemp("trainers")
    project = tmp / "project"
    project.mkdir()
    _copy_project(project_dir, project, dialogue_model)
    env = {
        "VOICEBOT_STORE_URL": f"sqlite:///{tmp / 'calls.sqlite3'}",
        "VOICEBOT_PATHS_VAR_DIR": str(tmp / "var"),
        "VOICEBOT_LOGGING_FILE": str(tmp / "voicebot.log"),
    }
    settings = load_settings(project, env=env)
    _fill_call_store(settings.store_url)
    queue = AgentQueue(settings.store_url, QueueSettings())
    queue.add_agent("ann", PASSWORDS["ann"], "agent", ["general"])
    queue.add_agent("tom", PASSWORDS["tom"], "trainer", [])
    queue.add_agent("ada", PASSWORDS["ada"], "admin", ["general"])
    queue.add_agent("sue", PASSWORDS["sue"], "supervisor", ["general"])
    console = ConsoleSettings(database_url=settings.store_url, port=0, project=settings)
    try:
        with ConsoleServer(console) as server:
            yield Trainers(server.url, settings)
    finally:
        queue.close()


@pytest.fixture(scope="module")
def evaluated(trainers: Trainers, shipped: str) -> dict[str, Any]:
    """The identical copy and production, scored for real by an evaluate job
    started from the model page."""
    tom = trainers.client("tom")
    page = tom.get(f"/training/models/{IDENTICAL}")
    assert page.status == 200
    assert 'id="evaluate"' in page.body and 'id="comparison"' not in page.body
    started = tom.post(f"/training/models/{IDENTICAL}/evaluate", {})
    assert started.status == 303
    job_id = started.location.rsplit("/", 1)[-1]
    assert started.location == f"/training/jobs/{job_id}"
    progress_page = tom.get(started.location)
    assert '<progress id="job-progress" max="1"' in progress_page.body
    assert 'id="job-stage"' in progress_page.body and 'id="job-state"' in progress_page.body
    job = trainers.wait_for_job(tom, job_id)
    assert job["state"] == "succeeded", job
    assert (job["kind"], job["model"], job["progress"]) == ("evaluate", IDENTICAL, 1.0)
    return job


def test_an_agent_cannot_open_the_trainer_pages(trainers: Trainers, shipped: str) -> None:
    ann = trainers.client("ann")
    for path in ("/training", "/training/models", f"/training/models/{shipped}",
                 "/training/decisions", "/training/jobs/1.json"):  # fmt: skip
        refused = ann.get(path)
        assert refused.status == 403, path
    assert "agent role cannot open the training page" in ann.get("/training").body
    before = trainers.production()
    for path in ("/training/decide", "/training/retrain", "/training/rollback",
                 f"/training/models/{IDENTICAL}/deploy"):  # fmt: skip
        assert ann.post(path, {"decision": "discard"}).status == 403, path
    assert trainers.production() == before


def test_the_inbox_groups_near_identical_turns_the_doubtful_first(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    page = tom.get("/training")
    assert page.status == 200
    _assert_local_only(page)
    rows = _rows(page.body, "data-item-id")
    parcel = [row for row in rows.values() if PARCEL in row]
    assert len(parcel) == 1  # four wordings, one item
    cells = _cells(parcel[0])
    assert cells[2:4] == ["4", "4"]  # turns, calls
    assert "fallback" in cells[4] and "before escalation" in cells[4]
    assert cells[5] == "order_status"
    assert re.fullmatch(r"0\.\d\d", cells[6])
    assert any("the moon is made of cheese" in row for row in rows.values())
    assert not any("hello there" in row for row in rows.values())  # routine
    for item_id, row in rows.items():
        assert f'name="item_ids" value="{item_id}"' in row

    routine = _rows(tom.get("/training?routine=on").body, "data-item-id")
    assert any("hello there" in row for row in routine.values())
    moon = _rows(tom.get("/training?q=cheese").body, "data-item-id")
    assert len(moon) == 1 and "the moon is made of cheese" in next(iter(moon.values()))
    late = _rows(tom.get("/training?since=2999-01-01").body, "data-item-id")
    assert late == {}
    bad = tom.get("/training?since=yesterday")
    assert bad.status == 200 and "is not a date like" in bad.body

    form = page.body[page.body.index('<form method="post" action="/training/decide"') :]
    for value in ("intent", "new_intent", "out_of_scope", "discard"):
        assert f'name="decision" value="{value}"' in form
    assert '<select id="batch-intent" name="intent">' in form
    assert '<option value="order_status">' in form
    assert 'name="new_intent"' in form and '<textarea id="batch-response" name="response"' in form
    assert "Save decision" in form
    assert tom.get("/static/training.js").status == 200


def test_a_decision_without_the_csrf_token_is_refused(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    item_id = next(iter(_rows(tom.get("/training?q=walkabout").body, "data-item-id")))
    before = _data_digest(trainers.settings.project_dir)
    form = {
        "item_ids": [item_id], "decision": "intent", "intent": "order_status",
    }  # fmt: skip
    assert tom.post("/training/decide", form, csrf=False).status == 403
    assert tom.post("/training/decide", {**form, "csrf_token": tom.token[:-1] + "x"}).status == 403
    assert _data_digest(trainers.settings.project_dir) == before
    assert item_id in _rows(tom.get("/training").body, "data-item-id")


def test_assigning_an_intent_writes_the_examples_and_clears_the_item(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    item_id = next(iter(_rows(tom.get("/training?q=walkabout").body, "data-item-id")))
    form = {
        "item_ids": [item_id], "decision": "intent", "intent": "order_status",
    }  # fmt: skip
    decided = tom.post("/training/decide", form)
    assert decided.status == 303
    assert decided.location.startswith("/training?notice=decided&items=1&written=4")

    inbox = tom.get(decided.location)
    assert "Saved for 1 item: 4 examples written." in inbox.body
    assert item_id not in _rows(inbox.body, "data-item-id")
    data = trainers.settings.project_dir / "data"
    written = [p for p in data.rglob("*.yml") if f"- {PARCEL}\n" in p.read_text(encoding="utf-8")]
    assert [p.name for p in written] == ["orders.yml"]
    assert "- uh has my parcel gone walkabout\n" in written[0].read_text(encoding="utf-8")

    decisions = tom.get("/training/decisions")
    _assert_local_only(decisions)
    rows = list(_rows(decisions.body, "data-decision-id").values())
    assert len(rows) == 1
    cells = _cells(rows[0])
    assert cells[1:4] == ["tom", "Assign an existing intent", "order_status"]
    assert PARCEL in cells[4] and cells[6] == "4"
    assert "call-0" in cells[7] and "call-3" in cells[7]

    # The data is checked in the background; the inbox shows how that went.
    validation = re.search(r'id="validation" data-job-id="(\d+)" data-state="running"', inbox.body)
    assert validation, inbox.body
    job = trainers.wait_for_job(tom, validation.group(1))
    assert (job["kind"], job["state"], job["started_by"]) == ("validate", "succeeded", "tom")
    assert job["result"]["ok"] is True
    assert "rasa data validate passes" in tom.get("/training").body
    missing = tom.get("/training/jobs/999999.json")
    assert missing.status == 404 and "no job 999999" in missing.body


def test_the_item_page_shows_the_turns_and_corrects_entities(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    item_id = next(iter(_rows(tom.get("/training?q=cheese").body, "data-item-id")))
    page = tom.get(f"/training/items/{item_id}")
    assert page.status == 200
    _assert_local_only(page)
    turns = list(_rows(page.body, "data-turn-id").values())
    assert len(turns) == 1
    cells = _cells(turns[0])
    assert cells[1:7] == ["call-4", "voice", "the moon is made of cheese", "nlu_fallback",
                          "0.20", "0.90"]  # fmt: skip
    assert "fallback" in cells[7] and "before escalation" in cells[7]
    assert 'id="entities-form"' in page.body and page.body.count('name="entity"') == 3

    wrong = {
        "item_ids": [item_id], "decision": "entities", "back_to": "item",
        "entity": ["order_id", "", ""], "words": ["sun", "", ""], "intent": "inform",
    }  # fmt: skip
    refused = tom.post("/training/decide", wrong)
    assert refused.status == 400
    assert "Nothing was saved" in refused.body and "is not in the text" in refused.body
    assert 'id="entities-form"' in refused.body  # still on the item's page
    nothing_chosen = tom.post("/training/decide", {"decision": "discard"})
    assert nothing_chosen.status == 400 and "select at least one item first" in nothing_chosen.body
    new_but_taken = {
        "item_ids": [item_id], "decision": "new_intent", "new_intent": "greet",
    }  # fmt: skip
    refused = tom.post("/training/decide", new_but_taken)
    assert refused.status == 400 and "intent greet exists already" in refused.body

    decided = tom.post("/training/decide", {"item_ids": [item_id], "decision": "out_of_scope"})
    assert decided.status == 303
    out_of_scope = (trainers.settings.project_dir / "data/nlu/out_of_scope.yml").read_text()
    assert "- the moon is made of cheese\n" in out_of_scope
    gone = tom.get(f"/training/items/{item_id}")
    assert gone.status == 404 and "decided already" in gone.body


def test_a_new_intent_answers_with_a_stub_until_its_answer_is_written(
    trainers: Trainers,
) -> None:
    tom = trainers.client("tom")
    item_id = next(iter(_rows(tom.get("/training?q=warehouse").body, "data-item-id")))
    form = {"item_ids": [item_id], "decision": "new_intent", "new_intent": "warehouse_tour"}
    decided = tom.post("/training/decide", form)
    assert decided.status == 303
    domain = trainers.settings.project_dir / "domain.yml"
    assert "  - warehouse_tour\n" in domain.read_text(encoding="utf-8")
    inbox = tom.get("/training").body
    stubs = inbox[inbox.index('id="stubs"') :]
    assert '<input type="hidden" name="intent" value="warehouse_tour">' in stubs
    assert 'id="stub-utter_warehouse_tour"' in stubs

    empty = tom.post("/training/respond", {"intent": "warehouse_tour", "text": " "})
    assert empty.status == 400 and "write what the bot should answer" in empty.body
    answer = "Warehouse tours run on Saturdays at ten."
    written = tom.post("/training/respond", {"intent": "warehouse_tour", "text": answer})
    assert written.location == "/training?notice=response_set&intent=warehouse_tour"
    assert answer in domain.read_text(encoding="utf-8")
    inbox = tom.get(written.location).body
    assert "The answer for warehouse_tour is written." in inbox
    assert "stub-utter_warehouse_tour" not in inbox


def test_a_supervisor_reads_the_models_pages_without_their_actions(
    trainers: Trainers, shipped: str
) -> None:
    sue = trainers.client("sue")
    listing = sue.get("/training/models")
    assert listing.status == 200
    assert 'id="models"' in listing.body and f'href="/training/models/{shipped}"' in listing.body
    assert "Trainers and admins retrain, deploy and roll back models." in listing.body
    for action in ("/training/retrain", "/training/rollback", "/training/cross-validate"):
        assert f'action="{action}"' not in listing.body, action
    model_page = sue.get(f"/training/models/{IDENTICAL}")
    assert model_page.status == 200
    assert "/evaluate" not in model_page.body and "/deploy" not in model_page.body
    assert sue.post("/training/retrain", {}).status == 403


def test_the_models_page_marks_production(trainers: Trainers, shipped: str) -> None:
    tom = trainers.client("tom")
    page = tom.get("/training/models")
    assert page.status == 200
    _assert_local_only(page)
    rows = _rows(page.body, "data-model")
    assert {shipped, IDENTICAL, WORSE} <= set(rows)
    assert rows[shipped].startswith(' class="production"')
    assert 'class="production"' not in rows[IDENTICAL] + rows[WORSE]
    assert f'href="/training/models/{shipped}"' in rows[shipped]
    assert '<button type="submit" class="primary" id="retrain">Retrain now</button>' in page.body
    # The decisions pinned what production ran before the data changed.
    deployments = page.body[page.body.index('id="deployments"') :]
    assert "initial" in deployments and shipped in deployments


def test_the_models_page_shows_the_latest_cross_validation(trainers: Trainers) -> None:
    workflow = TrainingWorkflow(trainers.settings)
    try:
        job = workflow.jobs.start("cross_validate", "tom")
        per_intent = {
            "order_status": {"precision": 0.9, "recall": 0.8, "f1": 0.847, "support": 20},
            "greet": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 20},
        }
        result = {"folds": 3, "accuracy": 0.9125, "macro_f1": 0.9235,
                  "per_intent": per_intent, "seconds": 250.0}  # fmt: skip
        workflow.jobs.finish(job.id, result)
    finally:
        workflow.close()
    page = trainers.client("tom").get("/training/models")
    section = page.body[page.body.index('id="cross-validation"') :]
    assert "3 folds" in section and "accuracy <strong>0.912</strong>" in section
    assert "macro-F1 <strong>0.923</strong>" in section and "order_status (0.85)" in section
    assert 'action="/training/cross-validate"' in section


def test_a_second_retrain_is_refused_while_one_runs(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    engine = sa.create_engine(trainers.settings.store_url, future=True)
    try:
        # A retrain started from a terminal: another live process on this host.
        with engine.begin() as conn:
            job_id = conn.execute(
                jobs.insert().values(
                    kind="retrain", state="running", stage="training", progress=0.2,
                    started_by="sam", started_at=datetime.now(timezone.utc),
                    host=socket.gethostname(), pid=os.getppid(),
                )
            ).inserted_primary_key[0]  # fmt: skip
        refused = tom.post("/training/retrain", {})
        assert (refused.status, refused.location) == (
            303,
            "/training/models?notice=retrain_running",
        )
        page = tom.get(refused.location)
        assert "A retrain is already running" in page.body
        assert f'<tr data-job-id="{job_id}">' in page.body
    finally:
        with engine.begin() as conn:
            conn.execute(jobs.update().values(state="interrupted").where(jobs.c.id == job_id))
        engine.dispose()


def test_an_identical_model_deploys_and_a_rollback_restores_production(
    trainers: Trainers, shipped: str, evaluated: dict[str, Any]
) -> None:
    tom = trainers.client("tom")
    job_page = tom.get(f"/training/jobs/{evaluated['id']}")
    assert f'<a id="job-result" href="/training/models/{IDENTICAL}">' in job_page.body

    page = tom.get(f"/training/models/{IDENTICAL}")
    _assert_local_only(page)
    assert 'id="comparison"' in page.body and 'id="blocked"' not in page.body
    assert "this model may be deployed" in page.body
    assert 'id="deploy-form"' in page.body and 'id="override"' not in page.body
    overall = page.body[page.body.index('id="overall"') :]
    assert "±0.000" in overall and "Accuracy" in overall and "Weighted F1" in overall
    assert f'<img id="confusion" src="/training/models/{IDENTICAL}/confusion.svg"' in page.body
    svg = tom.get(f"/training/models/{IDENTICAL}/confusion.svg")
    assert svg.status == 200 and svg.headers.get("content-type") == "image/svg+xml"
    assert svg.body.lstrip().startswith("<svg")

    deployed = tom.post(f"/training/models/{IDENTICAL}/deploy", {})
    assert (deployed.status, deployed.location) == (
        303,
        f"/training/models?notice=deployed&model={IDENTICAL}",
    )
    assert trainers.production() == IDENTICAL
    models = tom.get(deployed.location)
    assert f"{IDENTICAL} is production; new calls use it." in models.body
    assert _rows(models.body, "data-model")[IDENTICAL].startswith(' class="production"')
    again = tom.post(f"/training/models/{IDENTICAL}/deploy", {})
    assert again.status == 409 and "already in production" in again.body

    rolled_back = tom.post("/training/rollback", {})
    assert rolled_back.status == 303
    assert rolled_back.location == f"/training/models?notice=rolled_back&model={shipped}"
    assert trainers.production() == shipped
    history = tom.get("/training/models").body
    history = history[history.index('id="deployments"') :]
    actions = re.findall(r"<td>tom</td>\s*<td>(\w+)</td>\s*<td>([\w-]+)</td>", history)
    assert actions[:2] == [("rollback", shipped), ("deploy", IDENTICAL)]


def _write_worse_scores(settings: Settings, production: str) -> None:
    """A test double: made-up scores for WORSE (production's predictions with
    every order_status example now missed), cached as if it had been scored."""
    test_hash = hash_of_test_set(settings.test_set)
    real = cached_evaluation(settings.models_dir, production, test_hash)
    assert real is not None
    missed = [
        replace(p, predicted="nlu_fallback", confidence=0.2) if p.expected == "order_status" else p
        for p in real.predictions
    ]
    made_up = score(WORSE, test_hash, missed, seconds=1.0)
    cache = settings.models_dir / f"{WORSE}.eval-{test_hash}.json"
    cache.write_text(json.dumps(made_up.to_dict()), encoding="utf-8")


def test_only_an_admin_may_override_a_blocked_model(
    trainers: Trainers, shipped: str, evaluated: dict[str, Any]
) -> None:
    _write_worse_scores(trainers.settings, shipped)
    tom = trainers.client("tom")
    page = tom.get(f"/training/models/{WORSE}")
    assert 'id="blocked"' in page.body and "order_status F1 falls by" in page.body
    assert 'id="override"' not in page.body
    worse_row = _rows(page.body, "data-intent")["order_status"]
    assert worse_row.startswith(' class="worse"')
    missed = page.body[
        page.body.index('id="worse-examples"') : page.body.index('id="better-heading"')
    ]
    assert "<td>order_status</td><td>nlu_fallback</td>" in missed

    refused = tom.post(f"/training/models/{WORSE}/deploy", {"override": "on"})
    assert refused.status == 409
    assert "only an admin may override the block" in refused.body
    refused = tom.post(f"/training/models/{WORSE}/deploy", {})
    assert refused.status == 409 and "cannot be deployed" in refused.body
    assert trainers.production() == shipped

    ada = trainers.client("ada")
    page = ada.get(f"/training/models/{WORSE}")
    assert '<input type="checkbox" name="override" id="override"' in page.body
    deployed = ada.post(f"/training/models/{WORSE}/deploy", {"override": "on"})
    assert deployed.status == 303
    assert trainers.production() == WORSE
    models = ada.get("/training/models").body
    assert "override</span>" in models[models.index('id="deployments"') :]

    # Back to the shipped model with its own "Roll back to this" button.
    assert f'name="to" value="{shipped}"' in _rows(models, "data-model")[shipped]
    back = ada.post("/training/rollback", {"to": shipped})
    assert back.status == 303 and trainers.production() == shipped


def test_model_names_are_checked(trainers: Trainers) -> None:
    tom = trainers.client("tom")
    for path in ("/training/models/not-a-model", "/training/models/dialogue-0000000000000000",
                 "/training/models/..%2F..%2Fdomain.yml/confusion.svg"):  # fmt: skip
        assert tom.get(path).status == 404, path
    refused = tom.post("/training/rollback", {"to": "../../domain.yml"})
    assert refused.status == 409 and "is not a model name" in refused.body


def test_a_console_without_a_project_says_training_is_not_set_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.sqlite3'}"
    queue = AgentQueue(url, QueueSettings())
    queue.add_agent("tom", PASSWORDS["tom"], "trainer", [])
    try:
        with ConsoleServer(ConsoleSettings(database_url=url, port=0)) as server:
            tom = WebClient(server.url)
            tom.log_in("tom")
            page = tom.get("/training")
            assert page.status == 200
            assert "Training is not set up for this console" in page.body
            assert tom.get("/training/models").status == 404
            assert tom.post("/training/decide", {"decision": "discard"}).status == 404
    finally:
        queue.close()
