"""Rasa NLU graph component that adds spoken order ids, phone numbers and e-mails.

Used in config.yml as ``- name: bot.nlu.component.SpokenEntityExtractor`` after
the tokenizer. It reads the raw message text. What it learns from the training
data is small: when trainers correct a number the recogniser misheard, as an
annotated example such as ``[won two three for five]{"entity": "order_id",
"value": "12345"}``, the misheard words become aliases of their digits
("won" is one, "for" is four) wherever they stand beside other number words.

It also drops hesitations ("um", "erm") from the token list, and stands each
found entity's words in the token list by one placeholder
token (``__order_id__``...), for training data and live messages alike, so
the featurizers after it see "where is my order __order_id__" rather than five
number words: the digits a caller reads out say nothing about what they want,
and otherwise pull every utterance with a number towards ``inform``.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import ENTITY_ATTRIBUTE_CONFIDENCE_TYPE, TOKENS_NAMES
from rasa.nlu.extractors.extractor import EntityExtractorMixin
from rasa.nlu.tokenizers.tokenizer import Token
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

from bot.nlu.number_words import FILLER_WORDS
from bot.nlu.spoken import SpokenEntity, SpokenEntityNormaliser, learn_digit_aliases

log = logging.getLogger(__name__)

ALIASES_FILE = "digit_aliases.json"
# Entities whose values are digits read out one by one.
DIGIT_ENTITIES = frozenset({"order_id", "phone_number"})


# Registered as a featurizer too: Rasa runs only tokenizers and featurizers over
# the training data, and the placeholders must be there when features are learnt.
@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR,
        DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER,
    ],
    is_trainable=True,
)
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
        return cls(config, model_storage, resource)

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage | None = None,
        resource: Resource | None = None,
        digit_aliases: dict[str, str] | None = None,
    ) -> None:
        self._config = {**self.get_default_config(), **config}
        self._model_storage = model_storage
        self._resource = resource
        self.digit_aliases = dict(digit_aliases or {})
        # Built once per component; the spaCy pipeline is cheap but not free.
        self._normaliser = SpokenEntityNormaliser(self.digit_aliases)

    def train(self, training_data: TrainingData) -> Resource:
        """Learns digit aliases from examples whose digit entities carry values."""
        corrections = []
        for example in training_data.entity_examples:
            text = example.get(TEXT) or ""
            for entity in example.get(ENTITIES, []):
                value = str(entity.get(ENTITY_ATTRIBUTE_VALUE) or "")
                if entity.get(ENTITY_ATTRIBUTE_TYPE) in DIGIT_ENTITIES and value.isdigit():
                    start, end = entity[ENTITY_ATTRIBUTE_START], entity[ENTITY_ATTRIBUTE_END]
                    corrections.append((text[start:end], value))
        self.digit_aliases = learn_digit_aliases(corrections)
        self._normaliser = SpokenEntityNormaliser(self.digit_aliases)
        if self.digit_aliases:
            log.info("digit aliases learnt from corrections: %s", self.digit_aliases)
        self.persist()
        assert self._resource is not None
        return self._resource

    def persist(self) -> None:
        if self._model_storage is None or self._resource is None:
            return
        with self._model_storage.write_to(self._resource) as directory:
            (directory / ALIASES_FILE).write_text(json.dumps(self.digit_aliases), "utf-8")

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> SpokenEntityExtractor:
        try:
            with model_storage.read_from(resource) as directory:
                aliases = json.loads((directory / ALIASES_FILE).read_text("utf-8"))
        except (ValueError, FileNotFoundError):
            aliases = {}  # a model trained before aliases were learnt
        return cls(config, model_storage, resource, aliases)

    def process(self, messages: list[Message]) -> list[Message]:
        """Append found entities to each message, keeping entities already there."""
        for message in messages:
            found = self._normaliser.extract(message.get(TEXT) or "")
            entities = self.add_extractor_name(self._as_entities(found))
            message.set(ENTITIES, message.get(ENTITIES, []) + entities, add_to_output=True)
            _mask_tokens(message, found)
        return messages

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Masks entity words in the examples' tokens; adds no entities."""
        for example in training_data.training_examples:
            text = example.get(TEXT)
            if text:
                _mask_tokens(example, self._normaliser.extract(text))
        return training_data

    @staticmethod
    def _as_entities(found: list[SpokenEntity]) -> list[dict[str, Any]]:
        return [
            {
                ENTITY_ATTRIBUTE_TYPE: entity.entity,
                ENTITY_ATTRIBUTE_VALUE: entity.value,
                ENTITY_ATTRIBUTE_START: entity.start,
                ENTITY_ATTRIBUTE_END: entity.end,
                ENTITY_ATTRIBUTE_CONFIDENCE_TYPE: 1.0,
            }
            for entity in found
        ]


def _mask_tokens(message: Message, found: list[SpokenEntity]) -> None:
    """Replaces the tokens inside each entity span by one placeholder token,
    and drops hesitations ("um", "erm"): they say nothing about what a caller
    wants, and callers with any request hesitate."""
    tokens: list[Token] | None = message.get(TOKENS_NAMES[TEXT])
    if not tokens:
        return
    masked: list[Token] = []
    for token in tokens:
        span = next((e for e in found if e.start <= token.start and token.end <= e.end), None)
        if span is None:
            if token.text.lower() not in FILLER_WORDS:
                masked.append(token)
        elif not masked or masked[-1].start != span.start:
            masked.append(Token(f"__{span.entity}__", span.start, span.end))
    # A turn of nothing but hesitation keeps its words.
    message.set(TOKENS_NAMES[TEXT], masked or tokens)
