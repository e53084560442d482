"""The spoken-entity component learns misheard digit words from trainers'
corrections: trained and loaded through Rasa's own model storage."""

from __future__ import annotations

from pathlib import Path

from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.nlu.tokenizers.whitespace_tokenizer import WhitespaceTokenizer
from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader
from rasa.shared.nlu.training_data.message import Message

from bot.nlu.component import SpokenEntityExtractor

TRAINING = """
version: "3.1"
nlu:
  - intent: order_status
    examples: |
      - where is my order
      - where is my order [wan two free four fife]{"entity": "order_id", "value": "12345"}
      - the order is [one two three four five](order_id)
"""


def _parsed(component: SpokenEntityExtractor, text: str) -> list[tuple[str, str]]:
    message = Message.build(text)
    tokenizer = WhitespaceTokenizer(WhitespaceTokenizer.get_default_config())
    tokenizer.process([message])
    component.process([message])
    return [(e["entity"], e["value"]) for e in message.get("entities", [])]


def test_corrections_train_digit_aliases_that_survive_loading(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    resource = Resource("spoken_entities")
    context = ExecutionContext(GraphSchema({}), "test")
    untrained = SpokenEntityExtractor.create({}, storage, resource, context)
    assert _parsed(untrained, "my order is wan two free four fife") == []

    untrained.train(RasaYAMLReader().reads(TRAINING))
    loaded = SpokenEntityExtractor.load({}, storage, resource, context)
    assert loaded.digit_aliases == {"fife": "five", "free": "three", "wan": "one"}
    assert _parsed(loaded, "my order is wan two free four fife") == [("order_id", "12345")]
    # "sate" was never taught: the order number heard has four digits, not five.
    assert _parsed(loaded, "order four five six seven sate") == [("order_id", "4567")]
    assert _parsed(loaded, "i waited for a reply") == []


def test_a_model_from_before_aliases_loads_without_them(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    context = ExecutionContext(GraphSchema({}), "test")
    loaded = SpokenEntityExtractor.load({}, storage, Resource("never_trained"), context)
    assert loaded.digit_aliases == {}
    assert _parsed(loaded, "order one two three four five") == [("order_id", "12345")]
