"""A call's conversation: caller turns in, bot turns out, escalation tracked.

``CallEngine`` owns what every call in the process shares (the dialogue model
and the supervised action server). ``Call`` is one conversation with its id,
clock and escalation state; the text chat drives it with typed lines and the
voice loop with final transcripts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.action_server import ActionServer
from bot.dialogue import Dialogue, DialogueReply
from bot.dialogue_stores import stores_away_seconds
from bot.escalation import CallerTurn, EscalationRules, detect
from bot.events import (
    BotTurn,
    CallEnded,
    CallEvent,
    CallStarted,
    EndReason,
    Escalated,
    EventListener,
    TranscriptFinal,
)
from bot.handoff import TranscriptLine, build_handoff
from bot.handoff_keeper import HandoffKeeper, QueuedHandoff, enqueue_once, start_handoff_replay
from bot.model_store import model_info
from bot.queue import AgentQueue, QueueItem
from bot.responses import Response
from bot.retry import Backoff, is_transient
from bot.settings import Settings
from bot.store import CallStore, database_key

log = logging.getLogger(__name__)

_SPACES = re.compile(r"\s+")
# Stored for an unclear turn the NLU could not parse at all.
UNCLEAR_INTENT = "unclear_speech"
# Terminal escape sequences (colours, cursor moves) pasted into a text call.
_ANSI_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# How often a turn that is past its holding phrase's time looks at the stores.
_STORE_LOOK_SECONDS = 0.1
# A handoff the queue could not take: the first retry after this long.
_HANDOFF_FIRST_RETRY_SECONDS = 0.5


def clean_utterance(text: str, max_chars: int) -> str:
    """Caller text as the NLU expects it: printable, single-spaced, lowercase, bounded."""
    printable = "".join(
        " " if unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp"} else ch
        for ch in _ANSI_ESCAPES.sub(" ", text)
    )
    cleaned = _SPACES.sub(" ", printable).strip().lower()
    if len(cleaned) > max_chars:
        log.warning("caller utterance of %d characters cut to %d", len(cleaned), max_chars)
        cut = cleaned[:max_chars]
        cleaned = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return cleaned


@dataclass(frozen=True)
class TurnResult:
    """One caller turn as ``voicebot chat --json`` prints it."""

    call_id: str
    user: str
    intent: str
    confidence: float
    entities: dict[str, Any]
    bot: tuple[str, ...]
    escalated: bool
    escalation_reason: str | None
    hang_up: bool = False
    # What the bot now waits for: a form's slot, and the responses it gave.
    requested_slot: str | None = None
    responses: tuple[str, ...] = ()
    # Why the call ends after this turn, when it does and not by the bot's goodbye.
    end_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "user": self.user,
            "intent": self.intent,
            "confidence": round(self.confidence, 4),
            "entities": self.entities,
            "bot": list(self.bot),
            "escalated": self.escalated,
            "escalation_reason": self.escalation_reason,
        }


@dataclass(frozen=True)
class LineInfo:
    """What a phone line knows of a call before a word is said."""

    line: int
    caller_number: str | None = None
    withheld: bool = False
    dialled_number: str | None = None


@dataclass
class Call:
    """One conversation. Escalation, once it happens, stays with the call."""

    call_id: str
    listeners: list[EventListener] = field(default_factory=list)
    escalation_reason: str | None = None
    ended: bool = False
    # The call's clock in ms since it started: wall time for live calls, the
    # channel's simulated clock for calls from files.
    clock: Callable[[], int] | None = None
    caller_turns: list[CallerTurn] = field(default_factory=list)
    channel: str = "text"
    caller_number: str | None = None
    transcript: list[TranscriptLine] = field(default_factory=list)
    intents: list[dict[str, Any]] = field(default_factory=list)
    queue_item_id: int | None = None
    # The dialogue model the call started with: it keeps it to the end even
    # when a new model is deployed meanwhile.
    dialogue: Dialogue | None = None
    # Caller turns so far; the latest one's id (see bot/events.py).
    turn_id: int = 0
    # Words for the caller while a turn is still being answered (a store is
    # slow to come back), delivered at once by the channel (a voice speaks
    # them); None: they come first in the turn's reply instead.
    meanwhile: Callable[[str], None] | None = None
    # The handoff the queue could not take yet, tried again while the call lasts.
    pending_handoff: asyncio.Task[Any] | None = None
    _started: float = field(default_factory=time.monotonic)

    def next_turn_id(self) -> int:
        self.turn_id += 1
        return self.turn_id

    def t_ms(self) -> int:
        if self.clock is not None:
            return self.clock()
        return int((time.monotonic() - self._started) * 1000)

    def emit(self, event: CallEvent) -> None:
        for listener in self.listeners:
            listener(event)


def start_retention_purge(settings: Settings) -> threading.Thread:
    """Purges expired recordings and caller details once, in a daemon thread;
    the report goes to the log, and a failure never stops the bot."""

    def purge() -> None:
        from bot.retention import purge_expired

        try:
            report = purge_expired(
                settings.store_url,
                settings.recordings_dir,
                settings.privacy.retention_days,
                audit_days=settings.privacy.audit_days,
            )
        except Exception:
            log.exception("purging expired call data failed")
            return
        log.info("retention purge: %s", report.summary())

    thread = threading.Thread(target=purge, name="retention-purge", daemon=True)
    thread.start()
    return thread


class CallEngine:
    """Loads the dialogue once and runs calls against it.

    Unless a model is configured explicitly, the engine follows production's
    deployments: a newly deployed model is loaded and warmed up in the
    background, then new calls get it while calls in progress keep theirs.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._action_server: ActionServer | None = None
        self._dialogue: Dialogue | None = None
        self._actions_url = ""
        self.store: CallStore | None = None
        self._rules: EscalationRules | None = None
        self.queue: AgentQueue | None = None
        self._model_lock = threading.Lock()
        self._failed_deployment = 0
        # Models replaced by a deployment, released once their last call ends.
        self._retired: list[Dialogue] = []
        self._live_calls: dict[str, Dialogue] = {}
        self._retire_lock = threading.Lock()  # held briefly, on the call's loop too
        self._stop_watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self._keeper: HandoffKeeper | None = None
        self._pending: dict[str, QueuedHandoff] = {}

    def start(self) -> None:
        from bot.training.deploy import production_model

        settings = self._settings
        self._rules = EscalationRules.from_mapping(settings.escalation)
        self.store = CallStore(settings.store_url)
        self.queue = AgentQueue(settings.store_url)
        resilience = settings.resilience
        self._keeper = HandoffKeeper(
            self.queue,
            settings.var_dir,
            database_key(settings.store_url),
            Backoff(_HANDOFF_FIRST_RETRY_SECONDS, max_seconds=resilience.handoff_retry_max_seconds),
        )
        start_handoff_replay(settings.store_url, settings.var_dir)
        start_retention_purge(settings)
        model = production_model(
            self.store.engine, settings.project_dir, settings.models_dir, settings.dialogue.model
        )
        actions_url = settings.dialogue.actions_url
        if not actions_url:
            self._action_server = ActionServer(
                settings.project_dir,
                settings.backend_database,
                settings.var_dir / "log" / "actions.log",
                settings.dialogue.action_server_start_seconds,
            )
            self._action_server.start()
            actions_url = self._action_server.webhook_url
        self._actions_url = actions_url
        self._dialogue = self._load_dialogue(model)
        log.info("dialogue model %s loaded; actions at %s", model.name, actions_url)
        poll = settings.dialogue.model_poll_seconds
        if not settings.dialogue.model and poll > 0:
            self._watcher = threading.Thread(
                target=self._watch_deployments, args=(poll,), name="model-watcher", daemon=True
            )
            self._watcher.start()

    def _load_dialogue(self, model: Path) -> Dialogue:
        dialogue = self._settings.dialogue
        wait = Backoff(give_up_seconds=self._settings.resilience.store_wait_seconds)
        return Dialogue(
            model, self._actions_url, dialogue.tracker_store_url, dialogue.lock_store_url, wait
        )

    @property
    def model_name(self) -> str:
        """The model new calls get."""
        return self.dialogue.model_path.name.removesuffix(".tar.gz")

    def _watch_deployments(self, poll_seconds: float) -> None:
        while not self._stop_watching.wait(poll_seconds):
            try:
                self.refresh_model()
            except Exception:  # the watcher must outlive any one bad deployment
                log.exception("checking the deployed model failed")

    def refresh_model(self) -> bool:
        """Loads the deployed model if it is not the one new calls get; True
        when new calls now get a different model. Blocking: call off the loop."""
        from bot.training.deploy import latest_deployment

        if self.store is None or self._settings.dialogue.model:
            return False
        with self._model_lock:
            latest = latest_deployment(self.store.engine)
            if latest is None:
                return False
            deployment_id, name = latest
            if name == self.model_name or deployment_id == self._failed_deployment:
                return False
            try:
                path = model_info(self._settings.models_dir, name).path
                fresh = self._load_dialogue(path)
                asyncio.run(fresh.warm_up())
            except Exception as exc:  # any failure: keep answering with the model we have
                # Not retried until a later deployment (or a redeploy of the same model).
                self._failed_deployment = deployment_id
                log.error("deployed model %s cannot be used: %s", name, exc)
                return False
            previous, self._dialogue = self._dialogue, fresh
            self._failed_deployment = 0
            if previous is not None:
                with self._retire_lock:
                    self._retired.append(previous)
                self._release_retired()
        log.info(
            "new calls now use model %s (was %s); calls in progress keep theirs",
            name, previous.model_path.name if previous else "none",
        )  # fmt: skip
        return True

    @property
    def retired_models(self) -> list[str]:
        """Replaced models still serving calls that started on them."""
        with self._retire_lock:
            return [d.model_path.name.removesuffix(".tar.gz") for d in self._retired]

    def _release_retired(self) -> None:
        """Closes replaced models no call uses any more (their database and
        Redis connections; each deploy would otherwise keep a pool open)."""
        with self._retire_lock:
            in_use = {id(dialogue) for dialogue in list(self._live_calls.values())}
            done = [d for d in self._retired if id(d) not in in_use]
            self._retired = [d for d in self._retired if id(d) in in_use]
        for dialogue in done:
            dialogue.close()
            log.info("model %s released: its last call has ended", dialogue.model_path.name)

    async def warm_up(self) -> None:
        await self.dialogue.warm_up()

    @property
    def action_server(self) -> ActionServer | None:
        """The action server this engine started and supervises; None when
        ``dialogue.actions_url`` points at one run elsewhere, or before start."""
        return self._action_server

    def close(self) -> None:
        self._stop_watching.set()
        if self._watcher is not None:
            self._watcher.join(timeout=60)
        for dialogue in [self._dialogue, *self._retired]:
            if dialogue is not None:
                dialogue.close()
        if self._action_server is not None:
            self._action_server.stop()
        if self.store is not None:
            self.store.close()
        if self.queue is not None:
            self.queue.close()

    @property
    def dialogue(self) -> Dialogue:
        if self._dialogue is None:
            raise RuntimeError("CallEngine.start() has not run")
        return self._dialogue

    @property
    def settings(self) -> Settings:
        return self._settings

    def awaits_agent(self, call: Call) -> bool:
        """Whether the call is queued as a live call that waits for a person
        (not a call-back task, and not a call the queue could not take)."""
        if call.escalation_reason is None or self._rules is None:
            return False
        if call.queue_item_id is None and call.call_id not in self._pending:
            return False
        return self._rules.rule(call.escalation_reason).kind == "call"

    def dialogue_of(self, call: Call) -> Dialogue:
        """The model a call started with."""
        return call.dialogue or self.dialogue

    def greeting(self) -> str:
        return self.dialogue.response_text(Response.GREET)

    def new_call(
        self,
        listeners: list[EventListener] | None = None,
        channel: str = "text",
        clock: Callable[[], int] | None = None,
        line: LineInfo | None = None,
    ) -> Call:
        every = [self.store.listener] if self.store is not None else []
        call = Call(
            call_id=uuid.uuid4().hex[:16],
            listeners=every + list(listeners or []),
            clock=clock,
            channel=channel,
            dialogue=self.dialogue,
            caller_number=line.caller_number if line is not None else None,
        )
        self._live_calls[call.call_id] = call.dialogue or self.dialogue
        started = CallStarted(call.call_id, 0, channel)
        if line is not None:
            started = dataclasses.replace(
                started,
                caller_number=line.caller_number,
                caller_withheld=line.withheld,
                dialled_number=line.dialled_number,
                line=line.line,
            )
        call.emit(started)
        return call

    async def _apply_escalation_rules(self, call: Call, reply: DialogueReply) -> DialogueReply:
        """Serious complaints and frustrated callers go to a person too."""
        if self._rules is None or reply.escalation_reason or call.escalation_reason:
            return reply
        reason = detect(self._rules, call.caller_turns)
        if reason is None:
            return reply
        said = await self.dialogue_of(call).escalate(call.call_id, reason)
        return dataclasses.replace(reply, bot=(*reply.bot, said), escalation_reason=reason)

    async def escalate(self, call: Call, reason: str) -> list[str]:
        """Escalates outside the dialogue's own rules (for example speech never
        understood); returns what the bot says."""
        said = [await self.dialogue_of(call).escalate(call.call_id, reason)]
        if call.escalation_reason is None:
            said.extend(await self._hand_over(call, reason))
            call.escalation_reason = reason
            call.emit(Escalated(call.call_id, call.t_ms(), reason))
        return said

    async def _hand_over(self, call: Call, reason: str) -> list[str]:
        """Queues the call (or its callback) for an agent with the handoff
        package; returns what the caller is told about the wait."""
        if self.queue is None or self._rules is None:
            return []
        rule = self._rules.rule(reason)
        skill = self._rules.skill_for([i["intent"] for i in call.intents])
        dialogue = self.dialogue_of(call)
        slots = await dialogue.slots(call.call_id)
        handoff = build_handoff(
            call.call_id, reason, rule.priority, skill, call.intents, call.transcript, slots,
            call.caller_number, call.channel,
        )  # fmt: skip
        queued = QueuedHandoff.new(
            call.call_id, rule.kind, reason, rule.priority, skill, handoff.caller_number,
            handoff.to_dict(), handoff.summary,
        )  # fmt: skip
        queue = self.queue
        loop = asyncio.get_running_loop()
        try:
            item = await loop.run_in_executor(None, enqueue_once, queue, queued, False)
        except Exception as exc:  # a dead queue database must not drop the caller
            self._keep_handoff(call, queued, exc)
            return [dialogue.response_text(Response.QUEUE_UNAVAILABLE)]
        call.queue_item_id = item.id
        if rule.kind == "callback":
            return []
        try:
            wait = await loop.run_in_executor(None, queue.estimated_wait_seconds, item.id)
        except Exception as exc:  # queued all the same: the hold line tells the place later
            log.error("call %s: the queue's wait cannot be read: %s", call.call_id, exc)
            return [dialogue.response_text(Response.QUEUE_UNAVAILABLE)]
        return [
            dialogue.response_text(Response.QUEUE_POSITION).format(
                position=item.position, wait=speak_wait(wait)
            )
        ]

    def _keep_handoff(self, call: Call, queued: QueuedHandoff, exc: BaseException) -> None:
        """A handoff the queue could not take: tried again while the caller is
        on the line (``bot/handoff_keeper.py``), kept in a file if they leave first."""
        keeper = self._keeper
        if keeper is None or not is_transient(exc):
            if keeper is not None:
                keeper.reject(queued, exc)
            else:
                log.error("call %s could not be queued: %s", call.call_id, exc)
            return
        log.warning(
            "call %s: the queue is unreachable (%s); its handoff is kept and tried again "
            "while the caller waits",
            call.call_id, exc,
        )  # fmt: skip
        self._pending[call.call_id] = queued

        async def keep() -> QueueItem | None:
            try:
                item = await keeper.keep(queued)
            finally:
                if not call.ended:
                    self._pending.pop(call.call_id, None)
            if item is not None:
                call.queue_item_id = item.id
            return item

        call.pending_handoff = asyncio.ensure_future(keep())

    async def _respond(
        self, call: Call, dialogue: Dialogue, utterance: str
    ) -> tuple[DialogueReply, tuple[str, ...]]:
        """The dialogue's reply; when a store it waits for is away past
        ``resilience.holding_phrase_after_seconds``, the holding phrase is said
        first (once): through ``call.meanwhile`` (then not in what is returned
        second), else at the head of the reply."""
        resilience = self._settings.resilience
        stores = self._settings.dialogue
        answer = asyncio.ensure_future(dialogue.respond(call.call_id, utterance))
        first: tuple[str, ...] = ()
        try:
            await asyncio.wait({answer}, timeout=resilience.holding_phrase_after_seconds)
            while not answer.done():
                if stores_away_seconds(stores.tracker_store_url, stores.lock_store_url) is not None:
                    phrase = resilience.holding_phrase
                    call.transcript.append(TranscriptLine(call.t_ms(), "bot", phrase))
                    log.info("call %s: a store is away; the caller hears %r", call.call_id, phrase)
                    if call.meanwhile is not None:
                        call.meanwhile(phrase)
                    else:
                        first = (phrase,)
                    break
                await asyncio.wait({answer}, timeout=_STORE_LOOK_SECONDS)
            return await answer, first
        finally:
            if not answer.done():
                answer.cancel()

    async def turn(
        self,
        call: Call,
        text: str,
        asr_confidence: float = 1.0,
        timings: dict[str, float] | None = None,
        loudness_dbfs: float | None = None,
        turn_id: int | None = None,
    ) -> TurnResult:
        """Handles one caller utterance; an empty one is treated as silence.

        ``turn_id`` is the voice turn the words came from; text calls leave it
        to the call to number its turns."""
        turn_id = call.next_turn_id() if turn_id is None else turn_id
        utterance = clean_utterance(text, self._settings.dialogue.max_utterance_chars)
        call.emit(
            TranscriptFinal(call.call_id, call.t_ms(), utterance, asr_confidence, turn_id=turn_id)
        )
        started = time.perf_counter()
        dialogue = self.dialogue_of(call)
        if not utterance:
            reply = DialogueReply(
                intent="",
                confidence=0.0,
                entities={},
                bot=(dialogue.response_text(Response.NOTHING_HEARD),),
            )
        else:
            if self._action_server is not None:
                # A server that died between turns comes back before it is needed.
                self._action_server.ensure_running()
            reply, first = await self._respond(call, dialogue, utterance)
            if first:
                reply = dataclasses.replace(reply, bot=(*first, *reply.bot))
            if reply.failed_actions and self._action_server is not None:
                self._action_server.ensure_running()
            call.caller_turns.append(
                CallerTurn(utterance, reply.intent, loudness_dbfs, reply.ticket_filed)
            )
            call.intents.append({"intent": reply.intent, "confidence": reply.confidence})
            call.transcript.append(TranscriptLine(call.t_ms(), "caller", utterance))
            reply = await self._apply_escalation_rules(call, reply)
            if reply.escalation_reason and call.escalation_reason is None:
                told = await self._hand_over(call, reply.escalation_reason)
                reply = dataclasses.replace(reply, bot=(*reply.bot, *told))
            said = reply.bot[len(first) :]  # the holding phrase is in the transcript already
            call.transcript.extend(TranscriptLine(call.t_ms(), "bot", b) for b in said)
        dialogue_ms = (time.perf_counter() - started) * 1000
        call.emit(
            BotTurn(
                call.call_id,
                call.t_ms(),
                user=utterance,
                intent=reply.intent,
                confidence=reply.confidence,
                entities=reply.entities,
                bot=reply.bot,
                dialogue_ms=round(dialogue_ms, 1),
                timings={**(timings or {}), "dialogue_ms": round(dialogue_ms, 1)},
                turn_id=turn_id,
            )
        )
        if reply.escalation_reason and call.escalation_reason is None:
            call.escalation_reason = reply.escalation_reason
            call.emit(Escalated(call.call_id, call.t_ms(), reply.escalation_reason))
        return TurnResult(
            call_id=call.call_id,
            user=utterance,
            intent=reply.intent,
            confidence=reply.confidence,
            entities=reply.entities,
            bot=reply.bot,
            escalated=call.escalation_reason is not None,
            escalation_reason=call.escalation_reason,
            hang_up=reply.hang_up,
            requested_slot=reply.requested_slot,
            responses=reply.responses,
        )

    async def record_unclear_turn(
        self, call: Call, text: str, asr_confidence: float, said: str, turn_id: int
    ) -> None:
        """A turn the recogniser was unsure of: the bot asked again instead of
        acting on it, but the words are kept (with what the NLU would have made
        of them) for the agent's handoff and the trainers' inbox."""
        utterance = clean_utterance(text, self._settings.dialogue.max_utterance_chars)
        call.emit(
            TranscriptFinal(call.call_id, call.t_ms(), utterance, asr_confidence, turn_id=turn_id)
        )
        try:
            intent, confidence = await self.dialogue_of(call).parse(utterance)
        except Exception as exc:  # the turn is still kept, just without a guess
            log.warning("call %s: parsing an unclear turn failed: %s", call.call_id, exc)
            intent, confidence = "", 0.0
        # Not in call.intents: a guess at unclear words must not route the call.
        call.transcript.append(TranscriptLine(call.t_ms(), "caller", utterance))
        call.transcript.append(TranscriptLine(call.t_ms(), "bot", said))
        call.emit(
            BotTurn(
                call.call_id,
                call.t_ms(),
                user=utterance,
                intent=intent or UNCLEAR_INTENT,
                confidence=confidence,
                bot=(said,),
                unclear=True,
                turn_id=turn_id,
            )
        )

    def record_caller_speech(
        self, call: Call, text: str, confidence: float, turn_id: int | None = None
    ) -> None:
        """What the caller says on hold: kept for the agent, not sent to the dialogue."""
        turn_id = call.next_turn_id() if turn_id is None else turn_id
        call.emit(TranscriptFinal(call.call_id, call.t_ms(), text, confidence, turn_id=turn_id))
        call.emit(BotTurn(call.call_id, call.t_ms(), user=text, intent="on_hold", turn_id=turn_id))
        call.transcript.append(TranscriptLine(call.t_ms(), "caller", text))

    def record_agent_speech(self, call: Call, text: str) -> None:
        call.transcript.append(TranscriptLine(call.t_ms(), "agent", text))

    def end_call(
        self,
        call: Call,
        reason: EndReason | str,
        recording_path: str | None = None,
        error: str | None = None,
    ) -> None:
        queued = self._pending.pop(call.call_id, None)
        if call.pending_handoff is not None and not call.pending_handoff.done():
            call.pending_handoff.cancel()
            if queued is not None and self._keeper is not None:
                self._keeper.spill(queued)
        if not call.ended:
            call.ended = True
            call.emit(
                CallEnded(call.call_id, call.t_ms(), EndReason(reason), recording_path, error)
            )
        self._live_calls.pop(call.call_id, None)
        if self._retired:
            self._release_retired()


def speak_wait(seconds: float) -> str:
    """An estimated wait as the caller hears it."""
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes == 1:
        return "about one minute"
    return f"about {minutes} minutes"
