"""Each dialogue model file is loaded once per process.

Loading a Rasa model builds its TensorFlow graphs: about half a minute of one
core. Agents in one process that use the same file (the engines of several
lines, a console evaluating the model production runs, a model deployed
again) share the loaded graph, which holds no conversation state: trackers,
locks and the action server stay each agent's own. The newest
``MAX_MODELS`` files stay loaded; an agent keeps the graph it was given for as
long as it lives, so a call on an older model is never cut short.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

# A model in production and the one being deployed beside it.
MAX_MODELS = 2

_lock = threading.Lock()
# The model file's SHA-256 -> its metadata and graph runner.
_loaded: OrderedDict[str, tuple[Any, Any]] = OrderedDict()


def _digest(model_path: Path) -> str:
    """The file's SHA-256: a copy of a model under another name or folder is
    the same model; a file rewritten in place is a new one."""
    sha = hashlib.sha256()
    with model_path.open("rb") as file:
        while chunk := file.read(1 << 20):
            sha.update(chunk)
    return sha.hexdigest()


def _load(model_path: Path) -> tuple[str, Any, Any]:
    """``MessageProcessor._load_model``'s result (file name, metadata, graph
    runner), the graph loaded at most once per model content."""
    from rasa.core.processor import MessageProcessor

    digest = _digest(model_path)
    with _lock:  # one load at a time: two would each take a core for half a minute
        if digest in _loaded:
            _loaded.move_to_end(digest)
            metadata, runner = _loaded[digest]
        else:
            _name, metadata, runner = MessageProcessor._load_model(model_path)
            _loaded[digest] = (metadata, runner)
            while len(_loaded) > MAX_MODELS:
                _loaded.popitem(last=False)
    return model_path.name, metadata, runner


def loaded_models() -> int:
    """How many distinct models (by content) this process holds loaded."""
    with _lock:
        return len(_loaded)


def load_agent(
    model_path: Path,
    action_endpoint: Any,
    tracker_store: Any,
    lock_store: Any,
) -> Any:
    """What ``Agent.load`` makes (Rasa's ``Agent``), with the model's graph shared (see above)."""
    from rasa.core.agent import Agent
    from rasa.core.nlg import TemplatedNaturalLanguageGenerator
    from rasa.core.processor import MessageProcessor

    class SharedModelProcessor(MessageProcessor):
        @staticmethod
        def _load_model(model_path: str | Path) -> tuple[str, Any, Any]:
            return _load(Path(model_path))

    agent = Agent(
        tracker_store=tracker_store, lock_store=lock_store, action_endpoint=action_endpoint
    )
    # As Agent.load_model does, with the processor above.
    agent.processor = SharedModelProcessor(
        model_path=model_path,
        tracker_store=agent.tracker_store,
        lock_store=agent.lock_store,
        action_endpoint=agent.action_endpoint,
        generator=agent.nlg,
        http_interpreter=agent.http_interpreter,
    )
    agent.domain = agent.processor.domain
    agent.tracker_store.domain = agent.domain
    if isinstance(agent.nlg, TemplatedNaturalLanguageGenerator):
        agent.nlg.responses = agent.domain.responses if agent.domain else {}
    return agent
