"""Rasa's intent classifier (DIET) and dialogue policy (TED), loading in seconds.

Used in config.yml as ``bot.quick_load.QuickDIETClassifier`` and
``bot.quick_load.QuickTEDPolicy``. They train, predict and save exactly as
Rasa's own; only loading differs. Rasa builds a loaded model's weights by
running one training step on an example (tracing the whole training graph,
backward pass and optimizer included), then overwrites every weight from the
saved checkpoint. That step was about three quarters of a model's load: 12.6 s
of 17.5 s on two cores, and a bot process, a deployment and every test that
starts a bot pay it.

Here the checkpoint is read first; the weights are created by the one
prediction Rasa already runs at load (to trace the prediction graph) and take
their saved values as they are created. The prediction graph needs every weight
of the model, so none is left at its random start: the load checks that every
weight created has its value in the checkpoint, and falls back to Rasa's way if
not. Fine-tuning (``rasa train --finetune``) needs the optimizer's state too and
loads Rasa's way.
"""

from __future__ import annotations

import logging
import time
from typing import Any, TypeVar

import tensorflow as tf
from rasa.core.policies.ted_policy import TED, TEDPolicy
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.nlu.classifiers.diet_classifier import DIET, DIETClassifier
from rasa.utils.tensorflow.constants import LEARNING_RATE, RUN_EAGERLY
from rasa.utils.tensorflow.model_data import RasaModelData
from rasa.utils.tensorflow.models import RasaModel

log = logging.getLogger(__name__)

M = TypeVar("M", bound=RasaModel)


def load_without_training_step(
    model_class: type[M],
    model_file: str,
    model_data_example: RasaModelData,
    predict_data_example: RasaModelData | None,
    finetune_mode: bool,
    **kwargs: Any,
) -> M:
    """A model of `model_class` with the weights saved in `model_file`, ready to predict."""

    def rasas_way() -> M:
        load = RasaModel.load.__func__
        model: M = load(
            model_class,
            model_file,
            model_data_example,
            predict_data_example,
            finetune_mode,
            **kwargs,
        )
        return model

    if finetune_mode or predict_data_example is None:
        return rasas_way()
    started = time.perf_counter()
    config = kwargs.get("config", {})
    model = model_class(**kwargs)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(config.get(LEARNING_RATE, 0.001)),
        run_eagerly=config.get(RUN_EAGERLY),
    )
    restore = model.load_weights(model_file)
    # The optimizer's saved state is not needed to predict.
    restore.expect_partial()
    model.run_inference(predict_data_example)
    try:
        restore.assert_existing_objects_matched()
    except AssertionError as exc:
        log.warning(
            "%s: a weight has no saved value (%s); loading with a training step instead",
            model_class.__name__,
            exc,
        )
        return rasas_way()
    log.debug("%s loaded in %.1f s", model_class.__name__, time.perf_counter() - started)
    return model


class LoadsWithoutTrainingStep:
    """Mixed into a Rasa model class, ahead of it: its `load` is `load_without_training_step`."""

    @classmethod
    def load(
        cls,
        model_file_name: str,
        model_data_example: RasaModelData,
        predict_data_example: RasaModelData | None = None,
        finetune_mode: bool = False,
        **kwargs: Any,
    ) -> Any:
        return load_without_training_step(
            cls,
            model_file_name,
            model_data_example,
            predict_data_example,
            finetune_mode,
            **kwargs,
        )


class QuickDIET(LoadsWithoutTrainingStep, DIET):
    pass


class QuickTED(LoadsWithoutTrainingStep, TED):
    pass


@DefaultV1Recipe.register(
    [
        DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER,
        DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR,
    ],
    is_trainable=True,
)
class QuickDIETClassifier(DIETClassifier):
    """Rasa's DIETClassifier (same settings), loading without a training step."""

    @staticmethod
    def model_class() -> type[RasaModel]:
        return QuickDIET


@DefaultV1Recipe.register(
    DefaultV1Recipe.ComponentType.POLICY_WITH_END_TO_END_SUPPORT, is_trainable=True
)
class QuickTEDPolicy(TEDPolicy):
    """Rasa's TEDPolicy (same settings), loading without a training step."""

    @staticmethod
    def model_class() -> type[TED]:
        return QuickTED
