"""The Rasa assistant, loaded in-process: caller text in, bot replies out.

One ``Dialogue`` per process serves every call; the call id is Rasa's sender
id. Custom actions run in the supervised action server. A failed custom action
(crashed server, broken backend the action could not report) is caught here
and turned into an ``action_failure`` escalation, so the caller is never left
in silence.

With a SQL tracker store and a Redis lock store (several bot processes), a
database or Redis that goes away is waited out: each store call is retried
with backoff (``bot/dialogue_stores.py``) and the turn answers once the store
is back. When it stays away past ``store_backoff.give_up_seconds`` the turn
goes the way of a failed custom action: the caller hears the apology and is
put through to a person (``action_failure``), never left without an answer.

The agent's work runs on a thread of its own with its own event loop
(``dialogue_loop``): policy and NLU inference hold the CPU for tens of
milliseconds a turn, and on the calls' loop that would stall every other
call's audio processing (with eight calls ending turns together, over a
second). Each public coroutine hands its work to that loop and awaits it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from bot.dialogue_stores import (
    STORE_BACKOFF,
    TurnLock,
    collecting_outages,
    sql_tracker_store,
    store_outage,
    without_waiting,
)
from bot.responses import Response
from bot.retry import Backoff, ServiceUnavailable

_T = TypeVar("_T")

log = logging.getLogger(__name__)

ESCALATION_SLOT = "escalation_reason"
HANG_UP_RESPONSES = frozenset({"utter_goodbye"})
# A preview of the bot's next words stops after this many responses.
_PREVIEW_MAX_RESPONSES = 3
_ACTION_FAILED_PREFIX = "Encountered an exception while running action"

# The turn being handled in the current asyncio task; the log handler below
# adds failed action names to it. Calls in parallel each see their own list.
_current_failures: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "current_failures", default=None
)

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None


def dialogue_loop() -> asyncio.AbstractEventLoop:
    """The event loop (on its own daemon thread) that runs every dialogue's work."""
    global _loop
    with _loop_lock:
        if _loop is None:
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="dialogue", daemon=True).start()
            _loop = loop
        return _loop


async def on_dialogue_loop(work: Coroutine[Any, Any, _T]) -> _T:
    """Runs ``work`` on the dialogue loop and awaits it from any loop;
    cancelling the wait cancels the work."""
    loop = dialogue_loop()
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        return await work
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(work, loop))


class DialogueError(RuntimeError):
    """The dialogue model cannot be loaded or used."""


class _ActionFailureCatcher(logging.Handler):
    """Notices Rasa's log line for an action that raised, for the current turn."""

    def emit(self, record: logging.LogRecord) -> None:
        failures = _current_failures.get()
        message = record.getMessage()
        if failures is not None and message.startswith(_ACTION_FAILED_PREFIX):
            failures.append(message.split("'")[1] if "'" in message else "unknown")


@dataclass(frozen=True)
class DialogueReply:
    """What the assistant made of one caller turn and what it answered."""

    intent: str
    confidence: float
    entities: dict[str, str | list[str]]
    bot: tuple[str, ...]
    responses: tuple[str, ...] = ()
    escalation_reason: str | None = None
    hang_up: bool = False
    failed_actions: tuple[str, ...] = field(default_factory=tuple)
    requested_slot: str | None = None
    ticket_filed: bool = False


def entity_values(entities: list[dict[str, Any]]) -> dict[str, str | list[str]]:
    """Entity name to value; a name found twice maps to the list of values."""
    found: dict[str, list[str]] = {}
    for entity in entities:
        values = found.setdefault(str(entity.get("entity")), [])
        value = str(entity.get("value"))
        if value not in values:
            values.append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in found.items()}


@dataclass(frozen=True)
class Preview:
    """The NLU's reading of words, and the plain responses that would follow."""

    intent: str
    confidence: float
    said: tuple[str, ...]


class Dialogue:
    """Rasa's ``Agent`` with the voicebot's per-turn bookkeeping."""

    def __init__(
        self,
        model_path: Path,
        actions_url: str,
        tracker_store_url: str = "",
        lock_store_url: str = "",
        store_backoff: Backoff = STORE_BACKOFF,
    ) -> None:
        # Rasa and TensorFlow take seconds to import: only when a call needs them.
        from rasa.utils.endpoints import EndpointConfig
        from rasa.utils.log_utils import configure_structlog

        from bot.model_cache import load_agent

        # Rasa's structured log prints every debug line unless configured.
        configure_structlog(logging.WARNING)

        if not model_path.is_file():
            raise DialogueError(
                f"dialogue model {model_path} is missing. Run `voicebot models train`."
            )
        self._tracker_outage = store_outage("tracker store", tracker_store_url, store_backoff)
        lock_outage = store_outage("lock store", lock_store_url, store_backoff)
        try:
            self._agent = load_agent(
                model_path,
                action_endpoint=EndpointConfig(url=actions_url),
                tracker_store=sql_tracker_store(tracker_store_url, self._tracker_outage),
                lock_store=redis_lock_store(lock_store_url),
            )
        except Exception as exc:  # Rasa raises many types for a bad archive
            raise DialogueError(
                f"cannot load dialogue model {model_path} ({exc}). It may be corrupt: "
                "delete it and run `voicebot models train`."
            ) from exc
        if not self._agent.is_ready():
            raise DialogueError(
                f"dialogue model {model_path} did not load. Run `voicebot models train`."
            )
        self.model_path = model_path
        self._turn_lock = TurnLock(self._agent.lock_store, lock_outage)
        # One catcher serves every loaded model (a newly deployed one loads
        # beside the old): two would report each failure twice.
        processor_log = logging.getLogger("rasa.core.processor")
        if not any(isinstance(h, _ActionFailureCatcher) for h in processor_log.handlers):
            processor_log.addHandler(_ActionFailureCatcher())

    @property
    def store_backoff(self) -> Backoff:
        """How the tracker and lock stores are waited for when they go away."""
        return self._tracker_outage.backoff

    @store_backoff.setter
    def store_backoff(self, backoff: Backoff) -> None:
        self._tracker_outage.backoff = backoff
        self._turn_lock.outage.backoff = backoff

    def close(self) -> None:
        """Releases the tracker store's and lock store's connections (the log
        catcher stays for models loaded later)."""
        store = self._agent.tracker_store
        store = getattr(store, "_tracker_store", store)  # Rasa's awaitable wrapper
        engine = getattr(store, "engine", None)
        if engine is not None:
            engine.dispose()
        redis = getattr(self._agent.lock_store, "red", None)
        if redis is not None:
            redis.close()

    def response_text(self, name: Response | str) -> str:
        """The first text variant of a domain response."""
        name = name.value if isinstance(name, Response) else name
        variants = self._agent.domain.responses.get(name) if self._agent.domain else None
        if not variants:
            raise DialogueError(f"the domain has no response {name}")
        return str(variants[0]["text"])

    async def _tracker(self, call_id: str) -> Any:
        assert self._agent.processor is not None
        return await self._agent.processor.get_tracker(call_id)

    async def respond(self, call_id: str, text: str) -> DialogueReply:
        """Runs one caller turn through NLU, policies and actions."""
        return await on_dialogue_loop(self._respond(call_id, text))

    async def _respond(self, call_id: str, text: str) -> DialogueReply:
        with collecting_outages() as outages:
            return await self._respond_once(call_id, text, outages)

    async def _respond_once(
        self, call_id: str, text: str, outages: list[ServiceUnavailable]
    ) -> DialogueReply:
        from rasa.core.channels.channel import CollectingOutputChannel, UserMessage

        before = await self._tracker(call_id)
        if outages:  # the call's state could not be read: nothing runs on a blank one
            return await self._store_failure(call_id, text, before, (), outages[0])
        events_before = len(before.events)
        reason_before = before.get_slot(ESCALATION_SLOT)

        failures: list[str] = []
        token = _current_failures.set(failures)
        channel = CollectingOutputChannel()
        try:
            async with self._turn_lock.held(call_id):
                assert self._agent.processor is not None
                await self._agent.processor.handle_message(
                    UserMessage(text, channel, sender_id=call_id, input_channel="voicebot")
                )
        except ServiceUnavailable as exc:  # the lock store: the turn did not run
            return await self._store_failure(call_id, text, before, (), exc)
        finally:
            _current_failures.reset(token)
        if outages:  # the turn ran, but its state could not be saved
            said = tuple(str(m["text"]) for m in channel.messages if m.get("text"))
            return await self._store_failure(call_id, text, None, said, outages[0])

        tracker = await self._tracker(call_id)
        new_events = list(tracker.events)[events_before:]
        responses = tuple(
            str(e.metadata.get("utter_action"))
            for e in new_events
            if getattr(e, "type_name", "") == "bot" and e.metadata.get("utter_action")
        )
        bot = [str(m["text"]) for m in channel.messages if m.get("text")]
        # The stored tracker replays without a form's answers (Rasa drops them
        # for featurisation), so this turn's message comes from the raw events.
        latest = next(
            (e for e in reversed(new_events) if getattr(e, "type_name", "") == "user"), None
        )
        intent = latest.intent if latest else {}
        reason = tracker.get_slot(ESCALATION_SLOT)
        new_reason = reason if reason and reason != reason_before else None

        if failures and not new_reason:
            new_reason = "action_failure"
            bot.append(self.response_text(Response.ESCALATE_ACTION_FAILURE))
            await self._mark_escalated(tracker, new_reason)
            log.error("call %s: custom action(s) failed: %s", call_id, ", ".join(failures))

        hang_up = bool(responses) and responses[-1] in HANG_UP_RESPONSES
        if not hang_up and HANG_UP_RESPONSES.intersection(responses):
            # A goodbye followed by more (a question asked again) would say two
            # contradictory things: the call goes on, so the goodbye goes.
            log.warning("call %s: goodbye before more words dropped: %s", call_id, responses)
            farewells = {self.response_text(name) for name in HANG_UP_RESPONSES}
            bot = [text for text in bot if text not in farewells]
        return DialogueReply(
            intent=str(intent.get("name") or ""),
            confidence=float(intent.get("confidence") or 0.0),
            entities=entity_values(latest.entities if latest else []),
            bot=tuple(bot),
            responses=responses,
            escalation_reason=new_reason,
            hang_up=hang_up,
            failed_actions=tuple(failures),
            requested_slot=tracker.get_slot("requested_slot") if tracker.active_loop_name else None,
            ticket_filed=tracker.get_slot("ticket_id") != before.get_slot("ticket_id"),
        )

    async def _store_failure(
        self,
        call_id: str,
        text: str,
        tracker: Any,
        said: tuple[str, ...],
        outage: ServiceUnavailable,
    ) -> DialogueReply:
        """The turn when a store stayed away: what was said, the apology, and
        ``action_failure`` (the engine puts the caller through to a person)."""
        log.error("call %s: %s; the call goes to a person", call_id, outage)
        with without_waiting():  # waited enough already
            parsed = await self._agent.parse_message(text)
            if tracker is not None:
                await self._mark_escalated(tracker, "action_failure")
        intent = parsed.get("intent") or {}
        return DialogueReply(
            intent=str(intent.get("name") or ""),
            confidence=float(intent.get("confidence") or 0.0),
            entities=entity_values(parsed.get("entities") or []),
            bot=(*said, self.response_text(Response.ESCALATE_ACTION_FAILURE)),
            escalation_reason="action_failure",
        )

    async def parse(self, text: str) -> tuple[str, float]:
        """What the NLU makes of a text (intent, confidence), without touching
        any call's dialogue state."""
        return await on_dialogue_loop(self._parse(text))

    async def _parse(self, text: str) -> tuple[str, float]:
        parsed = await self._agent.parse_message(text)
        intent = parsed.get("intent") or {}
        return str(intent.get("name") or ""), float(intent.get("confidence") or 0.0)

    async def preview(
        self, call_id: str, text: str, predict: Callable[[str, float], bool]
    ) -> Preview:
        """What the NLU makes of ``text`` and, when ``predict(intent,
        confidence)`` says so, what the bot would say next, predicted on a
        copy of the call's tracker: nothing is saved and no action runs.

        Only plain responses are predicted, up to the next listen; when the
        next step is a custom action or a form (whose words depend on what it
        does), the preview stops there. Responses filled from slots are left out.
        """
        return await on_dialogue_loop(self._preview(call_id, text, predict))

    async def _preview(
        self, call_id: str, text: str, predict: Callable[[str, float], bool]
    ) -> Preview:
        from rasa.core.channels.channel import UserMessage
        from rasa.shared.core.events import (
            ActionExecuted,
            BotUttered,
            SessionStarted,
            UserUttered,
        )

        processor, domain = self._agent.processor, self._agent.domain
        assert processor is not None and domain is not None
        with without_waiting():  # a guess is worth no wait
            tracker = (await self._tracker(call_id)).copy()
        if not tracker.events:
            # The call's first words: Rasa starts the session before them.
            for event in (
                ActionExecuted("action_session_start"),
                SessionStarted(),
                ActionExecuted("action_listen"),
            ):
                tracker.update(event)
        parsed = await processor.parse_message(UserMessage(text, sender_id=call_id), tracker)
        intent = parsed.get("intent") or {}
        name, confidence = str(intent.get("name") or ""), float(intent.get("confidence") or 0.0)
        said: list[str] = []
        if not predict(name, confidence):
            return Preview(name, confidence, ())
        tracker.update(UserUttered(text, parsed["intent"], parsed["entities"], parsed), domain)
        for _ in range(_PREVIEW_MAX_RESPONSES):
            prediction = processor.predict_next_with_tracker(tracker)
            if prediction is None:
                break
            action = max(prediction["scores"], key=lambda score: score["score"])["action"]
            if not action.startswith("utter_") or action not in domain.responses:
                break
            words = self.response_text(action)
            if "{" in words:
                break
            said.append(words)
            tracker.update(ActionExecuted(action))
            tracker.update(BotUttered(words, metadata={"utter_action": action}))
        return Preview(name, confidence, tuple(said))

    async def warm_up(self) -> None:
        """Runs the models once, so the first caller does not wait for
        TensorFlow to build its graphs (seconds on a busy machine)."""
        return await on_dialogue_loop(self._warm_up())

    async def _warm_up(self) -> None:
        from rasa.shared.core.trackers import DialogueStateTracker

        assert self._agent.processor is not None and self._agent.domain is not None
        await self._agent.parse_message("hello")
        tracker = DialogueStateTracker.from_events("warm-up", [], self._agent.domain.slots)
        self._agent.processor.predict_next_with_tracker(tracker)

    async def slots(self, call_id: str) -> dict[str, Any]:
        """The call's slot values (order number, e-mail...)."""
        return await on_dialogue_loop(self._slots(call_id))

    async def _slots(self, call_id: str) -> dict[str, Any]:
        tracker = await self._tracker(call_id)
        return dict(tracker.current_slot_values())

    async def escalate(self, call_id: str, reason: str) -> str:
        """Marks the call escalated for a reason found outside the dialogue."""
        return await on_dialogue_loop(self._escalate(call_id, reason))

    async def _escalate(self, call_id: str, reason: str) -> str:
        tracker = await self._tracker(call_id)
        await self._mark_escalated(tracker, reason)
        return self.response_text(f"utter_escalate_{reason}")

    async def _mark_escalated(self, tracker: Any, reason: str) -> None:
        """Records the escalation in the tracker and leaves any open form."""
        from rasa.shared.core.events import ActiveLoop, SlotSet

        tracker.update(SlotSet(ESCALATION_SLOT, reason))
        if tracker.active_loop_name:
            tracker.update(ActiveLoop(None))
            tracker.update(SlotSet("requested_slot", None))
        assert self._agent.tracker_store is not None
        await self._agent.tracker_store.save(tracker)


def redis_lock_store(url: str) -> Any:
    """Rasa's Redis lock store for ``redis://host:port/db``; None keeps the in-memory one."""
    if not url:
        return None
    from urllib.parse import urlparse

    from rasa.core.lock_store import RedisLockStore

    parts = urlparse(url)
    if parts.scheme != "redis":
        raise DialogueError(f"lock store URL must start with redis://, not {url!r}")
    return RedisLockStore(
        host=parts.hostname or "localhost",
        port=parts.port or 6379,
        db=int(parts.path.strip("/") or 1),
        password=parts.password,
        key_prefix="voicebot",
    )
