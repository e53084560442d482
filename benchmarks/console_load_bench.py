"""Console load benchmark: many agents following the live queue on PostgreSQL
while calls are queued and claimed. Writes benchmarks/results/console_load.json.

Three processes share a fresh schema of PostgreSQL's ``test`` database
(VOICEBOT_BENCH_POSTGRES_URL), dropped afterwards:

- the console: the real app served by uvicorn on a free port (``ConsoleServer``);
- the bot's side: queues ``--calls`` escalated calls at a steady pace over
  ``--duration`` seconds, each with its handoff package, as the call engine
  does (``build_handoff``, then ``AgentQueue.enqueue``), and stamps each with
  the system-wide monotonic clock as its transaction sends COMMIT;
- the agents: ``--agents`` HTTP clients on one asyncio loop (aiohttp, which
  Rasa already installs), each with an account made by ``AgentQueue.add_agent``
  (as ``voicebot agents add`` does). Each logs in through the login form (CSRF
  token from the form and its cookie), sets itself available and keeps the
  queue page's live stream open as queue.js does: an EventSource on
  ``/queue/events``; on its opening and on each ``queue`` event a fetch of
  ``/queue/snapshot``, one at a time, and one more after it when events came
  meanwhile. An idle agent waits for its page to list a call, reacts after a
  moment and takes one as people do: half the agents press "Take next" (the
  console picks the first call in line for them), the others press Take on
  the first row of their list (the form's POST with the session's CSRF
  token). Either follows the redirect: to the call page (and its transcript
  stream) when it got a call, back to the queue page when another agent was
  first (or the queue was empty), whose fresh list it reads before trying
  again. It handles the call for a random time, resolves it, sets itself
  available and waits for the next. The queue page stays open throughout,
  as in a tab of its own.

Measured:

- ``page_ms``: for every agent and every call, from the enqueue's commit to
  the moment that agent's page is up to date with it: the first snapshot that
  lists the call, or else the first one asked for after a stream event that
  covers the enqueue (the call was taken before this page could show it).
  ``stream_ms``: to the stream event alone. The goal is on ``page_ms``.
- claims: each successful Take counted per call by the clients and from the
  database's change log; the Take POST's round trip (won and refused); the
  wait from commit to a successful Take (includes the agents' reaction time).
- errors: any status or redirect other than the browser's flow expects,
  failed requests, streams that ended or failed, and agent/call pairs whose
  update never came.
- the console process's CPU (cores busy) and resident memory, the machine's
  CPU, and the agents' event loop lag (their stamps are late by as much).

Goals: page_ms p95 <= 1000 ms, no errors, every call claimed exactly once.
Exit status 1 when a goal is missed, 2 without PostgreSQL.

Run: .venv/bin/python benchmarks/console_load_bench.py (50 agents, 500 calls
over 60 s); while developing: --agents 5 --calls 30 --duration 15.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing
import os
import platform
import queue as queue_module
import random
import re
import resource
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from bot.console.app import ConsoleSettings  # noqa: E402
from bot.console.server import ConsoleServer  # noqa: E402
from bot.queue import AgentQueue, QueueSettings  # noqa: E402

RESULTS = PROJECT_DIR / "benchmarks" / "results" / "console_load.json"
POSTGRES_URL = os.environ.get(
    "VOICEBOT_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
GOAL_PAGE_P95_MS = 1000.0
PASSWORD = "load-bench-pass"
LOGIN_CONCURRENCY = 4  # password hashing is slow on purpose
SKILLS = ("orders", "billing", "general")
TASKS = ("order_status", "delivery_problem", "refund_status", "billing_question", "account_help")
CALL_REASONS = ("explicit_request", "repeated_fallback", "no_progress", "caller_frustrated")
REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=60)
STREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=None)
RECONNECT_SECONDS = 1.0  # the stream's "retry: 1000"
ROW_ID = re.compile(r'<tr data-item-id="(\d+)"')
CALL_PAGE = re.compile(r"/calls/(\d+)")
FORM_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)"')

Stamps = list[tuple[int, float, float]]  # per call: item id, enqueue called, COMMIT sent


@dataclass(frozen=True)
class Options:
    agents: int = 50
    calls: int = 500
    duration_seconds: float = 60.0
    handle_seconds: tuple[float, float] = (1.0, 3.0)
    reaction_seconds: tuple[float, float] = (0.2, 0.6)
    settle_seconds: float = 60.0
    seed: int = 7
    output: Path = RESULTS


def parse_options(argv: list[str] | None = None) -> Options:
    defaults = Options()
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--agents", type=int, default=defaults.agents)
    parser.add_argument("--calls", type=int, default=defaults.calls)
    parser.add_argument(
        "--duration",
        type=float,
        default=defaults.duration_seconds,
        help="seconds over which the calls are queued",
    )
    parser.add_argument(
        "--handle",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=defaults.handle_seconds,
        help="seconds on each call",
    )
    parser.add_argument(
        "--reaction",
        type=float,
        nargs=2,
        metavar=("MIN", "MAX"),
        default=defaults.reaction_seconds,
        help="seconds before pressing Take",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=defaults.settle_seconds,
        help="seconds allowed after the last enqueue to handle the rest",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--output", type=Path, default=defaults.output, help="results file")
    args = parser.parse_args(argv)
    if args.agents < 1 or args.calls < 1:
        parser.error("--agents and --calls must be at least 1")
    if not (args.duration > 0 and args.settle > 0):
        parser.error("--duration and --settle must be more than 0")
    for name in ("handle", "reaction"):
        low, high = getattr(args, name)
        if not 0 <= low <= high:
            parser.error(f"--{name} needs 0 <= MIN <= MAX, got {low:g} {high:g}")
    return Options(
        args.agents,
        args.calls,
        args.duration,
        tuple(args.handle),
        tuple(args.reaction),
        args.settle,
        args.seed,
        args.output,
    )


def percentiles_ms(seconds: Iterable[float]) -> dict[str, float] | None:
    ordered = sorted(value * 1000 for value in seconds)
    if not ordered:
        return None

    def rank(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))], 1)

    return {
        "count": len(ordered),
        "p50": rank(0.50),
        "p95": rank(0.95),
        "max": round(ordered[-1], 1),
        "mean": round(sum(ordered) / len(ordered), 1),
    }


@contextmanager
def postgres_schema() -> Iterator[tuple[str, str]]:
    """A schema of its own in the test database: (its URL, its name)."""
    schema = f"console_load_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(POSTGRES_URL, future=True)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False), schema
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


# -- the console's and the bot's processes


def serve_console(settings: ConsoleSettings, ready: Any, stop: Any) -> None:
    with ConsoleServer(settings) as server:
        ready.send(server.url)
        stop.wait()


def produce_calls(
    url: str, settings: QueueSettings, options: Options, go: Any, abort: Any, out: Any
) -> None:
    """Queues the calls as the call engine does on escalation; sends back
    their ``Stamps``, or why not."""
    from bot.escalation import EscalationRules
    from bot.handoff import TranscriptLine, build_handoff
    from bot.settings import load_settings

    rules = EscalationRules.from_mapping(load_settings(PROJECT_DIR).escalation)
    pick = random.Random(options.seed)
    stamps: Stamps = []
    commits: list[float] = []
    try:
        with AgentQueue(url, settings) as queue:
            # Stamped as COMMIT is sent: the call becomes visible during its round trip.
            sa.event.listen(queue.engine, "commit", lambda _conn: commits.append(time.monotonic()))
            queue.waiting()  # connected before the first measured enqueue
            go.wait()
            if abort.is_set():
                out.put("the agents did not get started")
                return
            start, gap = time.monotonic(), options.duration_seconds / options.calls
            for n in range(options.calls):
                time.sleep(max(0.0, start + n * gap - time.monotonic()))
                task, reason, call_id = pick.choice(TASKS), pick.choice(CALL_REASONS), f"load-{n}"
                rule = rules.rule(reason)
                said = [TranscriptLine(0, "bot", "Hello, how can I help?"),
                        TranscriptLine(2100, "caller", f"it's about {task.replace('_', ' ')}"),
                        TranscriptLine(5400, "caller", "can I talk to a person")]  # fmt: skip
                handoff = build_handoff(
                    call_id, reason, rule.priority, rules.skill_for([task]),
                    [{"intent": task, "confidence": 0.91}], said,
                    {"order_id": str(10000 + n)}, f"+44207946{n:04d}",
                )  # fmt: skip
                before = time.monotonic()
                item = queue.enqueue(
                    call_id, rule.kind, reason, rule.priority, handoff.skill,
                    handoff.caller_number, handoff.to_dict(), handoff.summary,
                )  # fmt: skip
                stamps.append((item.id, before, commits[-1]))
    except Exception as exc:  # reported by the main process
        out.put(f"enqueue failed after {len(stamps)} calls: {exc!r}")
        return
    out.put(stamps)


def bot_side_report(out: Any, timeout_seconds: float) -> Stamps | str:
    try:
        stamps: Stamps | str = out.get(timeout=timeout_seconds)
    except queue_module.Empty:
        return f"no word from the bot's side in {timeout_seconds:.0f} s"
    return stamps


# -- the agents


@dataclass
class Board:
    """What the agents share: claims, resolutions, errors, request counts."""

    calls: int
    done: asyncio.Event
    claims: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)
    taken_at: dict[int, float] = field(default_factory=dict)
    resolved: set[int] = field(default_factory=set)
    take_won: list[float] = field(default_factory=list)
    take_refused: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    stopping: bool = False


class AgentClient:
    """One agent's browser: a cookie jar, the queue page's stream and snapshots."""

    def __init__(self, base_url: str, name: str, board: Board, options: Options) -> None:
        self.name, self.board, self.options = name, board, options
        self.pick = random.Random(f"{options.seed}-{name}")
        # Some people use the Take next button, others the first row's Take.
        self.takes_next = self.pick.random() < 0.5
        self.http = aiohttp.ClientSession(
            base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=REQUEST_TIMEOUT
        )
        self.csrf = ""
        self.events: list[tuple[float, int]] = []  # (arrived, change id)
        self.snapshots: list[tuple[float, float, frozenset[int]]] = []  # (asked, got, item ids)
        self.view: list[int] = []  # the calls the page lists, first in line first
        self.listed = asyncio.Event()  # the page lists a call
        self.dirty = asyncio.Event()  # a refresh is due
        self.stream_open = asyncio.Event()

    def _error(self, what: str) -> None:
        if not self.board.stopping:
            self.board.errors[what] += 1

    async def _send(
        self, method: str, path: str, route: str, expect: int, **kwargs: Any
    ) -> tuple[str, str] | None:
        """(Location, body) of a response with the expected status; else None,
        the error counted."""
        self.board.requests[f"{method} {route}"] += 1
        try:
            async with self.http.request(method, path, allow_redirects=False, **kwargs) as resp:
                body = await resp.text()
                if resp.status != expect:
                    self._error(f"{method} {route}: HTTP {resp.status}")
                    return None
                return resp.headers.get("Location", ""), body
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._error(f"{method} {route}: {type(exc).__name__}")
            return None

    async def _queue_page(self) -> str | None:
        page = await self._send("GET", "/queue", "/queue", 200)
        if page is None:
            return None
        self._show(int(found) for found in ROW_ID.findall(page[1]))
        return page[1]

    async def _submit(self, path: str, route: str, want: str, **form: str) -> str | None:
        """A form's POST, answered 303 to a path starting with ``want``, which
        is then loaded as the browser does; returns that path."""
        sent = await self._send("POST", path, route, 303, data={"csrf_token": self.csrf, **form})
        if sent is None:
            return None
        if not sent[0].startswith(want):
            self._error(f"POST {route}: redirected to {sent[0]!r}")
            return None
        await self._queue_page()  # every form here leads back to the queue
        return sent[0]

    def _show(self, ids: Iterable[int]) -> None:
        self.view = list(ids)
        if self.view:
            self.listed.set()
        else:
            self.listed.clear()

    async def log_in(self) -> bool:
        form = await self._send("GET", "/login", "/login", 200)
        token = FORM_TOKEN.search(form[1]) if form else None
        if token is None:
            self._error("GET /login: no CSRF token in the form")
            return False
        fields = {"name": self.name, "password": PASSWORD, "csrf_token": token.group(1)}
        sent = await self._send("POST", "/login", "/login", 303, data=fields)
        if sent is None or sent[0] != "/queue":
            self._error(f"POST /login: redirected to {sent[0] if sent else None!r}")
            return False
        meta = META_TOKEN.search(await self._queue_page() or "")
        if meta is None:
            self._error("GET /queue: no CSRF token on the page")
            return False
        self.csrf = meta.group(1)
        ready = await self._submit(
            "/agent/state", "/agent/state", "/queue", state="available", next="/queue"
        )
        return ready is not None

    async def follow_queue(self) -> None:
        """The page's EventSource: reconnects after a second, as browsers do."""
        while True:
            self.board.requests["GET /queue/events"] += 1
            try:
                async with self.http.get("/queue/events", timeout=STREAM_TIMEOUT) as resp:
                    if resp.status != 200:
                        self._error(f"GET /queue/events: HTTP {resp.status}")
                    else:
                        self.stream_open.set()
                        self.dirty.set()  # the "open" handler refreshes
                        await self._read_events(resp)
                        self._error("queue stream ended")
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                self._error(f"queue stream: {type(exc).__name__}")
            await asyncio.sleep(RECONNECT_SECONDS)

    async def _read_events(self, resp: aiohttp.ClientResponse) -> None:
        name = data = ""
        async for raw in resp.content:
            line = raw.decode("utf-8").rstrip("\r\n")
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "event":
                name = value
            elif key == "data":
                data = value
            elif not line:  # the end of an event
                if name == "queue":
                    self.events.append((time.monotonic(), int(json.loads(data)["change"])))
                    self.dirty.set()
                elif name == "end":  # the console closed the stream, saying why
                    self._error(f"queue stream ended by the console: {data}")
                name = data = ""

    async def refresh_page(self) -> None:
        """queue.js's refresh(): one snapshot at a time, one more if asked meanwhile."""
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            asked = time.monotonic()
            got = await self._send(
                "GET",
                "/queue/snapshot",
                "/queue/snapshot",
                200,
                headers={"Accept": "application/json"},
            )
            if got is not None:
                ids = [int(item["id"]) for item in json.loads(got[1])["items"]]
                self.snapshots.append((asked, time.monotonic(), frozenset(ids)))
                self._show(ids)

    async def follow_call(self, item_id: int) -> None:
        """The call page's transcript stream, open while the agent has the call."""
        self.board.requests["GET /calls/{id}/events"] += 1
        try:
            async with self.http.get(f"/calls/{item_id}/events", timeout=STREAM_TIMEOUT) as resp:
                if resp.status != 200:
                    self._error(f"GET /calls/{{id}}/events: HTTP {resp.status}")
                    return
                async for _line in resp.content:
                    pass
                self._error("call stream ended")
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self._error(f"call stream: {type(exc).__name__}")

    async def work(self) -> None:
        while True:
            await self.listed.wait()
            await asyncio.sleep(self.pick.uniform(*self.options.reaction_seconds))
            if not self.view:  # someone took it meanwhile
                continue
            if self.takes_next:
                path, route, refused = "/queue/take-next", "/queue/take-next", "queue_empty"
            else:
                item_id = self.view[0]
                self.board.attempts[item_id] += 1
                path, route, refused = f"/queue/{item_id}/take", "/queue/{id}/take", "already_taken"
            asked = time.monotonic()
            sent = await self._send("POST", path, route, 303, data={"csrf_token": self.csrf})
            answered = time.monotonic()
            if sent is None:
                continue
            won = CALL_PAGE.fullmatch(sent[0])
            if won is not None:
                item_id = int(won.group(1))
                self.board.take_won.append(answered - asked)
                self.board.claims[item_id] += 1
                self.board.taken_at.setdefault(item_id, answered)
                await self._handle(item_id)
            elif sent[0] == f"/queue?notice={refused}":
                self.board.take_refused.append(answered - asked)
                await self._queue_page()
            else:
                self._error(f"POST {route}: redirected to {sent[0]!r}")

    async def _handle(self, item_id: int) -> None:
        if await self._send("GET", f"/calls/{item_id}", "/calls/{id}", 200) is None:
            return
        transcript = asyncio.create_task(self.follow_call(item_id))
        await asyncio.sleep(self.pick.uniform(*self.options.handle_seconds))
        resolved = await self._submit(
            f"/calls/{item_id}/resolve",
            "/calls/{id}/resolve",
            "/queue?notice=resolved",
            disposition="resolved",
        )
        transcript.cancel()
        with suppress(asyncio.CancelledError):
            await transcript
        if resolved is None:
            return
        self.board.resolved.add(item_id)
        if len(self.board.resolved) >= self.board.calls:
            self.board.done.set()
        await self._submit(
            "/agent/state", "/agent/state", "/queue", state="available", next="/queue"
        )


# -- resource use


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)  # all but idle and iowait


async def sample_rss(pid: int, samples: list[float]) -> None:
    while True:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                samples.append(int(line.split()[1]) / 1024)
        await asyncio.sleep(1.0)


async def loop_lag(lags: list[float], period: float = 0.05) -> None:
    while True:
        asked = time.monotonic()
        await asyncio.sleep(period)
        lags.append(time.monotonic() - asked - period)


# -- one run


@dataclass
class Run:
    board: Board
    clients: list[AgentClient]
    produced: Stamps = field(default_factory=list)
    login_seconds: float = 0.0
    load_seconds: float = 0.0
    console_cpu_seconds: float = 0.0
    agents_cpu_seconds: float = 0.0
    machine_busy_share: float = 0.0
    load_average: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the machine's, at the start
    rss_mib: list[float] = field(default_factory=list)
    loop_lags: list[float] = field(default_factory=list)


async def log_in_all(run: Run) -> None:
    gate = asyncio.Semaphore(LOGIN_CONCURRENCY)

    async def log_in(client: AgentClient) -> bool:
        async with gate:
            return await client.log_in()

    began = time.monotonic()
    logged_in = await asyncio.gather(*(log_in(client) for client in run.clients))
    run.login_seconds = time.monotonic() - began
    if not all(logged_in):
        failed = logged_in.count(False)
        raise RuntimeError(f"{failed} agents could not log in: {dict(run.board.errors)}")


async def drive_agents(
    options: Options, base_url: str, names: list[str], console_pid: int, signals: Any, out: Any
) -> Run:
    go, abort = signals
    board = Board(options.calls, asyncio.Event())
    run = Run(board, [AgentClient(base_url, name, board, options) for name in names])
    tasks: list[asyncio.Task[None]] = []
    limit = options.duration_seconds + options.settle_seconds
    produced = asyncio.get_running_loop().run_in_executor(None, bot_side_report, out, limit + 60)
    try:
        await log_in_all(run)
        for client in run.clients:
            tasks += [
                asyncio.create_task(client.follow_queue()),
                asyncio.create_task(client.refresh_page()),
            ]
        await asyncio.wait_for(asyncio.gather(*(c.stream_open.wait() for c in run.clients)), 60)
        tasks += [
            asyncio.create_task(loop_lag(run.loop_lags)),
            asyncio.create_task(sample_rss(console_pid, run.rss_mib)),
        ]
        tasks += [asyncio.create_task(client.work()) for client in run.clients]
        cpu, own = process_cpu_seconds(console_pid), time.process_time()
        busy, total = machine_busy_ticks()
        run.load_average = os.getloadavg()
        started = time.monotonic()
        go.set()
        while not board.done.is_set() and time.monotonic() < started + limit:
            if produced.done() and isinstance(produced.result(), str):  # the bot's side failed
                break
            with suppress(asyncio.TimeoutError):
                await asyncio.wait_for(board.done.wait(), 0.5)
        run.load_seconds = time.monotonic() - started
        run.console_cpu_seconds = process_cpu_seconds(console_pid) - cpu
        run.agents_cpu_seconds = time.process_time() - own
        busy_now, total_now = machine_busy_ticks()
        run.machine_busy_share = (busy_now - busy) / max(1, total_now - total)
    finally:
        if not go.is_set():  # failed before the load: the bot's side stands down
            abort.set()
            go.set()
        board.stopping = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in run.clients:
            await client.http.close()
    stamps = await produced
    if isinstance(stamps, str):
        raise RuntimeError(f"the bot's side failed: {stamps}")
    run.produced = stamps
    return run


def update_latencies(
    clients: list[AgentClient], committed: dict[int, float], enqueue_change: dict[int, int]
) -> dict[str, Any]:
    """Per agent and call: commit → stream event, and commit → page up to date."""
    page: list[float] = []
    stream: list[float] = []
    listed = missed = 0
    for client in clients:
        arrived = [at for at, _ in client.events]
        # Commits race, so ids may come out of order: an event covers all ids up to the highest yet.
        covered: list[int] = []
        for _, change_id in client.events:
            covered.append(max(change_id, covered[-1] if covered else 0))
        asked = [at for at, _, _ in client.snapshots]
        first_listing: dict[int, int] = {}
        for index, (_, _, ids) in enumerate(client.snapshots):
            for item_id in ids:
                first_listing.setdefault(item_id, index)
        for item_id, at in committed.items():
            event = bisect.bisect_left(covered, enqueue_change[item_id])
            if event == len(covered):
                missed += 1
                continue
            stream.append(arrived[event] - at)
            up_to_date = bisect.bisect_left(asked, arrived[event])
            if item_id in first_listing:
                listed += 1
                up_to_date = min(up_to_date, first_listing[item_id])
            if up_to_date == len(client.snapshots):
                missed += 1
                continue
            page.append(client.snapshots[up_to_date][1] - at)
    return {
        "page_ms": percentiles_ms(page),
        "stream_ms": percentiles_ms(stream),
        "pairs": len(clients) * len(committed),
        "listed_on_page": listed,
        "missed": missed,
    }


def database_claims(
    url: str, settings: QueueSettings
) -> tuple[Counter[int], dict[int, int], dict[str, int]]:
    """From the change log: claims per item and each item's enqueue change;
    from the items: how many end in each status."""
    from bot.queue.schema import items

    with AgentQueue(url, settings) as queue:
        log = queue.changes_since(0, limit=10_000_000)
        with queue.engine.connect() as conn:
            query = sa.select(items.c.status, sa.func.count()).group_by(items.c.status)
            statuses = {str(status): int(n) for status, n in conn.execute(query)}
    of_items = [(change.kind, change.item_id, change.id) for change in log if change.item_id]
    claimed = Counter(item_id for kind, item_id, _ in of_items if kind == "claimed")
    enqueued = {item_id: change_id for kind, item_id, change_id in of_items if kind == "enqueued"}
    return claimed, enqueued, statuses


def run_load(options: Options, url: str, schema: str) -> dict[str, Any]:
    from bot.store import metadata as call_store_tables

    settings = QueueSettings(notify_channel=schema)
    names = [f"agent{n:03d}" for n in range(options.agents)]
    with AgentQueue(url, settings) as queue:
        # The bot's call store lives beside the queue; the call pages read its turns.
        call_store_tables.create_all(queue.engine)
        with queue.engine.connect() as conn:
            version = str(conn.execute(sa.text("SHOW server_version")).scalar())
        for name in names:
            queue.add_agent(name, PASSWORD, "agent", SKILLS)
    context = multiprocessing.get_context("spawn")
    ready_in, ready_out = context.Pipe(duplex=False)
    stop, go, abort, out = context.Event(), context.Event(), context.Event(), context.Queue()
    console_settings = ConsoleSettings(database_url=url, port=0, queue=settings)
    console = context.Process(target=serve_console, args=(console_settings, ready_out, stop))
    producer = context.Process(target=produce_calls, args=(url, settings, options, go, abort, out))
    console.start()
    producer.start()
    try:
        if not ready_in.poll(120):
            raise RuntimeError("the console did not start in 120 s")
        assert console.pid is not None
        base_url = ready_in.recv()
        run = asyncio.run(drive_agents(options, base_url, names, console.pid, (go, abort), out))
    finally:
        stop.set()
        console.join(30)
        for process in (console, producer):
            if process.is_alive():
                process.terminate()
                process.join(10)
    claimed, enqueued, statuses = database_claims(url, settings)
    return report(options, f"PostgreSQL {version}", run, claimed, enqueued, statuses)


def report(
    options: Options,
    database: str,
    run: Run,
    claimed: Counter[int],
    enqueued: dict[int, int],
    statuses: dict[str, int],
) -> dict[str, Any]:
    board, load = run.board, run.load_seconds
    committed = {item_id: commit for item_id, _, commit in run.produced}
    updates = update_latencies(run.clients, committed, enqueued)
    not_once_clients = {i: n for i, n in board.claims.items() if n != 1 or i not in committed}
    not_once_db = {i: n for i, n in claimed.items() if n != 1 or i not in committed}
    unclaimed = sorted((set(committed) - set(board.claims)) | (set(committed) - set(claimed)))
    once = not (not_once_clients or not_once_db or unclaimed) and len(committed) == options.calls
    errors = sum(board.errors.values()) + updates["missed"]
    page_p95 = (updates["page_ms"] or {}).get("p95")
    rss = run.rss_mib or [0.0]
    return {
        "benchmark": "console_load",
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "system": platform.platform(terse=True),
            "load_average_at_start": [round(n, 2) for n in run.load_average],
        },
        "setup": {
            "agents": options.agents,
            "calls": options.calls,
            "duration_seconds": options.duration_seconds,
            "handle_seconds": list(options.handle_seconds),
            "reaction_seconds": list(options.reaction_seconds),
            "database": f"{database}, a fresh schema of the test database",
            "console": "the console app under uvicorn, in a process of its own",
            "agents_client": "aiohttp, one asyncio loop, in a process of its own",
            "login_concurrency": LOGIN_CONCURRENCY,
            "seed": options.seed,
        },
        "goals": {
            "page_update_p95_ms": {
                "goal": GOAL_PAGE_P95_MS,
                "measured": page_p95,
                "met": page_p95 is not None and page_p95 <= GOAL_PAGE_P95_MS,
            },
            "errors": {"goal": 0, "measured": errors, "met": errors == 0},
            "claimed_once": {"goal": True, "measured": once, "met": once},
        },
        "live_updates": updates,
        "claims": {
            "calls_queued": len(committed),
            "claimed_by_clients": sum(board.claims.values()),
            "claimed_in_database": sum(claimed[i] for i in committed),
            "not_once_clients": not_once_clients,
            "not_once_database": not_once_db,
            "unclaimed": unclaimed,
            "resolved": len(board.resolved),
            "items_by_status": statuses,
            "take_won_ms": percentiles_ms(board.take_won),
            "take_refused_ms": percentiles_ms(board.take_refused),
            "contended_calls": sum(1 for n in board.attempts.values() if n > 1),
            "commit_to_taken_ms": percentiles_ms(
                board.taken_at[i] - at for i, at in committed.items() if i in board.taken_at
            ),
            "enqueue_to_commit_ms": percentiles_ms(c - b for _, b, c in run.produced),
        },
        "http": {
            "errors": dict(board.errors),
            "requests": dict(board.requests),
            "requests_per_second": round(sum(board.requests.values()) / load, 1),
            "snapshots_per_second": round(board.requests["GET /queue/snapshot"] / load, 1),
        },
        "resources": {
            "load_seconds": round(load, 1),
            "login_seconds": round(run.login_seconds, 1),
            "console_cpu_cores": round(run.console_cpu_seconds / load, 2),
            "console_rss_mib_max": round(max(rss), 1),
            "console_rss_mib_end": round(rss[-1], 1),
            "agents_cpu_cores": round(run.agents_cpu_seconds / load, 2),
            "agents_max_rss_mib": round(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
            ),
            "agents_loop_lag_ms": percentiles_ms(run.loop_lags),
            "machine_busy_share": round(run.machine_busy_share, 2),
        },
    }


def summary(results: dict[str, Any]) -> str:
    setup, goals, http = results["setup"], results["goals"], results["http"]
    updates, claims, used = results["live_updates"], results["claims"], results["resources"]
    page, stream = updates["page_ms"] or {}, updates["stream_ms"] or {}
    won, lag = claims["take_won_ms"] or {}, used["agents_loop_lag_ms"] or {}
    refused = (claims["take_refused_ms"] or {}).get("count", 0)
    missed = f" (updates that never came: {updates['missed']})" if updates["missed"] else ""

    def verdict(goal: str) -> str:
        return "met" if goals[goal]["met"] else "NOT MET"

    return "\n".join(
        [
            f"console load: {setup['agents']} agents, {setup['calls']} calls over "
            f"{setup['duration_seconds']:g} s; {setup['database']}; "
            f"{results['machine']['cpus']} cores",
            f"  page up to date after a call is queued: p50 {page.get('p50')} ms, "
            f"p95 {page.get('p95')} ms, max {page.get('max')} ms (the stream event alone: "
            f"p95 {stream.get('p95')} ms) -- goal p95 <= {GOAL_PAGE_P95_MS:g} ms: "
            f"{verdict('page_update_p95_ms')}",
            f"  errors: {goals['errors']['measured']} {http['errors'] or ''}"
            f"{missed}"
            f" -- goal none: {verdict('errors')}",
            f"  claims: {claims['claimed_by_clients']} seen by the agents, "
            f"{claims['claimed_in_database']} in the database, for {claims['calls_queued']} "
            f"calls; {len(claims['unclaimed'])} unclaimed -- goal each exactly once: "
            f"{verdict('claimed_once')}",
            f"  Take: p50 {won.get('p50')} ms, p95 {won.get('p95')} ms; {refused} refused "
            f"(another agent was first), {claims['contended_calls']} calls contended",
            f"  console: {used['console_cpu_cores']} cores, RSS max {used['console_rss_mib_max']} "
            f"MiB; {http['requests_per_second']} requests/s ({http['snapshots_per_second']} "
            f"snapshots/s); machine busy {used['machine_busy_share']:.0%}; "
            f"agents' loop lag p95 {lag.get('p95')} ms",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    try:
        with postgres_schema() as (url, schema):
            results = run_load(options, url, schema)
    except sa.exc.OperationalError as exc:
        print(f"console_load: PostgreSQL at {POSTGRES_URL}: {exc.orig}".strip(), file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"console_load: {exc}", file=sys.stderr)
        return 1
    options.output.parent.mkdir(parents=True, exist_ok=True)
    partial = options.output.with_name(options.output.name + ".part")
    partial.write_text(json.dumps(results, indent=2) + "\n")
    partial.replace(options.output)  # a run that fails leaves the last results whole
    print(summary(results))
    print(f"  written to {options.output}")
    return 0 if all(goal["met"] for goal in results["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
