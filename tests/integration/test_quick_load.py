"""The shipped model's intent classifier and dialogue policy load without a
training step, with every weight Rasa's own load gives them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tensorflow as tf
from rasa.core.policies.ted_policy import TED
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.nlu.classifiers.diet_classifier import DIET
from rasa.utils.common import override_defaults
from rasa.utils.tensorflow.models import RasaModel

from bot.quick_load import QuickDIETClassifier, QuickTEDPolicy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def unpacked(
    dialogue_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LocalModelStorage, Any]:
    folder = tmp_path_factory.mktemp("quick-load") / "storage"
    return LocalModelStorage.from_model_archive(folder, dialogue_model)


def load(component: type[GraphComponent], unpacked: tuple[Any, Any]) -> Any:
    """The model's node that uses `component`, loaded."""
    storage, metadata = unpacked
    [(name, node)] = [
        (n, v) for n, v in metadata.predict_schema.nodes.items() if v.uses is component
    ]
    context = ExecutionContext(metadata.predict_schema, metadata.model_id, node_name=name)
    config = override_defaults(component.get_default_config(), node.config)
    return component.load(config, storage, node.resource, context)


def weights(model: tf.keras.Model) -> dict[str, np.ndarray]:
    return {w.name: w.numpy() for w in model.weights}


@pytest.mark.parametrize(
    ("component", "rasa_model"), [(QuickDIETClassifier, DIET), (QuickTEDPolicy, TED)]
)
def test_loads_without_a_training_step_and_with_rasas_weights(
    component: type[GraphComponent],
    rasa_model: type[RasaModel],
    unpacked: tuple[Any, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Rasa's own load first (its model class): a training step, then every weight restored.
    with monkeypatch.context() as rasas_way:
        rasas_way.setattr(component, "model_class", staticmethod(lambda: rasa_model))
        expected = weights(load(component, unpacked).model)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a training step ran during the load")

    with monkeypatch.context() as patched:
        patched.setattr(tf.keras.Model, "fit", refuse)
        quick = load(component, unpacked)
    got = weights(quick.model)

    assert sorted(got) == sorted(expected)
    assert len(got) > 10
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    # The prediction graph is traced at load, as Rasa's is.
    assert quick.model.prepared_for_prediction
    assert quick.model._tf_predict_step is not None


def test_a_weight_without_a_saved_value_loads_rasas_way(
    unpacked: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A checkpoint that does not cover a weight the model creates (simulated: the
    check is made to fail) is loaded Rasa's way, with its training step."""
    expected = weights(load(QuickDIETClassifier, unpacked).model)
    keras_load_weights = tf.keras.Model.load_weights
    keras_fit = tf.keras.Model.fit
    fits: list[str] = []

    class Uncovered:
        def __init__(self, status: Any) -> None:
            self._status = status

        def expect_partial(self) -> None:
            self._status.expect_partial()

        def assert_existing_objects_matched(self) -> None:
            raise AssertionError("Unresolved object in checkpoint: a weight")

    def load_weights(model: tf.keras.Model, *args: Any, **kwargs: Any) -> Any:
        status = keras_load_weights(model, *args, **kwargs)
        return Uncovered(status) if not fits else status

    def fit(model: tf.keras.Model, *args: Any, **kwargs: Any) -> Any:
        fits.append(type(model).__name__)
        return keras_fit(model, *args, **kwargs)

    monkeypatch.setattr(tf.keras.Model, "load_weights", load_weights)
    monkeypatch.setattr(tf.keras.Model, "fit", fit)
    with caplog.at_level("WARNING", logger="bot.quick_load"):
        loaded = load(QuickDIETClassifier, unpacked)

    assert fits == ["QuickDIET"]
    assert "a weight has no saved value" in caplog.text
    got = weights(loaded.model)
    assert sorted(got) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
