"""Rasa NLU graph component that adds spoken order ids, phone numbers and e-mails.

Used in config.yml as ``- name: bot.nlu.component.SpokenEntityExtractor`` after
the tokenizer. It reads the raw message text, so it needs no features or tokens
and nothing is trained.
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import ENTITY_ATTRIBUTE_CONFIDENCE_TYPE
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.shared.nlu.constants import (
    ENTITIES,
    ENTITY_ATTRIBUTE_END,
    ENTITY_ATTRIBUTE_START,
    ENTITY_ATTRIBUTE_TYPE,
    ENTITY_ATTRIBUTE_VALUE,
    TEXT,
)
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from bot.nlu.spoken import SpokenEntityNormaliser


@DefaultV1Recipe.register([DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR], is_trainable=False)
class SpokenEntityExtractor(GraphComponent, EntityExtractorMixin):
    """Extracts ``order_id``, ``phone_number`` and ``email`` with spaCy rules."""

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    @staticmethod
    def supported_languages() -> list[str] | None:
        return ["en"]

    @staticmethod
    def required_packages() -> list[str]:
        return ["spacy"]

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SpokenEntityExtractor:
        return cls(config)

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = {**self.get_default_config(), **config}
        # Built once per component; the spaCy pipeline is cheap but not free.
        self._normaliser = SpokenEntityNormaliser()

    def process(self, messages: list[Message]) -> list[Message]:
        """Append found entities to each message, keeping entities already there."""
        for message in messages:
            entities = self.add_extractor_name(self._extract(message.get(TEXT) or ""))
            message.set(ENTITIES, message.get(ENTITIES, []) + entities, add_to_output=True)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Leave training data alone: entities are rule-based, not learned."""
        return training_data

    def _extract(self, text: str) -> list[dict[str, Any]]:
        return [
            {
                ENTITY_ATTRIBUTE_TYPE: found.entity,
                ENTITY_ATTRIBUTE_VALUE: found.value,
                ENTITY_ATTRIBUTE_START: found.start,
                ENTITY_ATTRIBUTE_END: found.end,
                ENTITY_ATTRIBUTE_CONFIDENCE_TYPE: 1.0,
            }
            for found in self._normaliser.extract(text)
        ]
