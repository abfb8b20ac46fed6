"""Tests for tfssl.export: versioned SavedModels that serve only the inference graph."""

import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf
from serving_utils import folder_size, serve_many_in_fresh_process

from tfssl.export import export_saved_model

NUM_CLASSES = 10
# 2,000,000 x 10 float32 = 80 MB of per-sample state, like Temporal Ensembling's ensemble.
BIG_NUM_SAMPLES = 2_000_000


class StandInModel(keras.Model):
    """Stands in for a tfssl model: a backbone plus training-only per-sample state."""

    def __init__(self, backbone, num_samples, **kwargs):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.ensemble = self.add_weight(
            shape=(num_samples, NUM_CLASSES),
            initializer="zeros",
            trainable=False,
            name="ensemble",
        )

    def call(self, inputs, training=False):
        return self.backbone(inputs, training=training)

    def serving_model(self, which="default"):
        if which == "default":
            return self.backbone
        raise ValueError(f"Unknown network to serve. Received: which={which!r}")


class StandInTeacherModel(StandInModel):
    """Stands in for Mean Teacher: serves the teacher by default, the student on request."""

    def __init__(self, backbone, num_samples, **kwargs):
        super().__init__(backbone, num_samples, **kwargs)
        # A clone has freshly initialized weights, so teacher and student answer differently.
        self.teacher = keras.models.clone_model(backbone)

    def serving_model(self, which="default"):
        if which in ("default", "teacher"):
            return self.teacher
        if which == "student":
            return self.backbone
        raise ValueError(f"Unknown network to serve. Received: which={which!r}")


def image_backbone(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((28, 28, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    h = keras.layers.GlobalAveragePooling2D()(h)
    return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(h))


def text_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((1,), dtype="string")
    # StringLookup owns a hash table, a resource the export has to carry along.
    h = keras.layers.StringLookup(vocabulary=["good", "bad", "so so"])(inputs)
    h = keras.layers.Embedding(4, 4)(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs, keras.layers.Dense(3)(h))


def saved_values(path):
    """Number of values in each variable the SavedModel's checkpoint holds."""
    prefix = os.path.join(path, "variables", "variables")
    return {
        name: int(np.prod(shape))
        for name, shape in tf.train.list_variables(prefix)
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH"
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Exports of the stand-ins and a text model: `{case: {"model", "which", "input_name",
    "inputs", "path"}}`."""
    base = tmp_path_factory.mktemp("exports")
    rng = np.random.default_rng(0)
    images = rng.random((5, 28, 28, 1), dtype=np.float32)
    words = np.array([["good"], ["bad"], ["so so"], ["好"]])

    big = StandInModel(image_backbone(), BIG_NUM_SAMPLES)
    big.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(True))
    # One step so Adam's slots exist and could leak into the export.
    big.fit(images, np.arange(5), epochs=1, verbose=0)
    teacher = StandInTeacherModel(image_backbone(), num_samples=100)
    text = text_model()

    cases = {
        "big": (big, "default", "x", images),
        "student": (teacher, "student", "x", images),
        "teacher": (teacher, "default", "x", images),
        "text": (text, "default", "text", words),
    }
    return {
        key: {
            "model": model, "which": which, "input_name": input_name, "inputs": array,
            "path": export_saved_model(model, base / key, which=which),
        }
        for key, (model, which, input_name, array) in cases.items()
    }


@pytest.fixture(scope="module")
def served(exported):
    """`exported`, each case with the `"out"` of ONE fresh process serving them all."""
    outputs = serve_many_in_fresh_process(
        [(case["path"], case["input_name"], case["inputs"]) for case in exported.values()]
    )
    return {key: {**case, "out": out} for (key, case), out in zip(exported.items(), outputs)}


def test_versions_count_up_from_one(tmp_path):
    model = image_backbone()
    first = export_saved_model(model, tmp_path / "m")
    second = export_saved_model(model, tmp_path / "m")
    assert first == str(tmp_path / "m" / "1")
    assert second == str(tmp_path / "m" / "2")
    assert os.path.isfile(os.path.join(second, "saved_model.pb"))
    # No staging folder is left next to the versions.
    assert sorted(os.listdir(tmp_path / "m")) == ["1", "2"]
    # Readable like any folder the user creates (mkdtemp's folders are mode 0700).
    os.makedirs(tmp_path / "plain")
    mode = os.stat(tmp_path / "plain").st_mode & 0o777
    assert os.stat(second).st_mode & 0o777 == mode


def test_next_version_follows_largest_integer_folder(tmp_path):
    for name in ("3", "10", "notes"):
        os.makedirs(tmp_path / name)
    (tmp_path / "42").write_text("a file, not a version")
    assert export_saved_model(image_backbone(), tmp_path) == str(tmp_path / "11")


def test_explicit_version_and_clash(tmp_path):
    model = image_backbone()
    assert export_saved_model(model, tmp_path, version=7) == str(tmp_path / "7")
    with pytest.raises(FileExistsError, match=re.escape(str(tmp_path / "7"))):
        export_saved_model(model, tmp_path, version=7)
    assert os.listdir(tmp_path) == ["7"]


@pytest.mark.parametrize("version", [-1, "2", 1.0, True])
def test_invalid_version(tmp_path, version):
    with pytest.raises(ValueError, match=re.escape(f"version={version!r}")):
        export_saved_model(image_backbone(), tmp_path, version=version)


def test_unknown_which(tmp_path):
    with pytest.raises(ValueError, match="which='teacher'"):
        export_saved_model(image_backbone(), tmp_path, which="teacher")
    model = StandInModel(image_backbone(), num_samples=10)
    with pytest.raises(ValueError, match="which='ema'"):
        export_saved_model(model, tmp_path, which="ema")
    assert os.listdir(tmp_path) == []


def test_multiple_inputs_error(tmp_path):
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], keras.layers.Dense(2)(keras.layers.Concatenate()([a, b])))
    with pytest.raises(ValueError, match="has 2 inputs"):
        export_saved_model(model, tmp_path)


def test_model_without_known_input_error(tmp_path):
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 3), np.float32))
    with pytest.raises(ValueError, match="Cannot read the input"):
        export_saved_model(model, tmp_path)


def test_training_state_stays_out(exported):
    case = exported["big"]
    model = case["model"]
    assert model.ensemble.shape == (BIG_NUM_SAMPLES, NUM_CLASSES)
    assert model.optimizer.variables  # Adam's slots exist in memory...
    # ...but only the backbone's weights are written: no ensemble, no slots.
    assert sum(saved_values(case["path"]).values()) == model.backbone.count_params()
    assert folder_size(case["path"]) < 5 * 2**20 < BIG_NUM_SAMPLES * NUM_CLASSES * 4


@pytest.mark.integration
@pytest.mark.parametrize("key", ["big", "student", "teacher"])
def test_fresh_process_serving_matches_predict(served, key):
    case = served[key]
    out = case["out"]
    expected = case["model"].serving_model(case["which"]).predict(case["inputs"], verbose=0)
    assert set(out) == {"logits", "probabilities", "classes"}
    assert out["logits"].dtype == np.float32
    assert out["probabilities"].dtype == np.float32
    assert out["classes"].dtype == np.int64
    np.testing.assert_allclose(out["logits"], expected, atol=1e-5)
    shifted = np.exp(expected - expected.max(axis=1, keepdims=True))
    softmax = shifted / shifted.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probabilities"], softmax, atol=1e-5)
    np.testing.assert_array_equal(out["classes"], expected.argmax(axis=1))


@pytest.mark.integration
def test_wrapper_predict_is_the_served_backbone(served):
    case = served["big"]
    expected = case["model"].predict(case["inputs"], verbose=0)
    np.testing.assert_allclose(case["out"]["logits"], expected, atol=1e-5)


def test_which_selects_teacher_or_student(exported):
    teacher = exported["teacher"]["model"].teacher
    student = exported["student"]["model"].backbone
    images = exported["teacher"]["inputs"]
    assert not np.allclose(teacher.predict(images, verbose=0), student.predict(images, verbose=0))
    # The Mean Teacher export writes one network, not both.
    for key, network in (("teacher", teacher), ("student", student)):
        assert sum(saved_values(exported[key]["path"]).values()) == network.count_params()


@pytest.mark.integration
def test_string_input_is_named_text(served):
    case = served["text"]
    expected = case["model"](tf.constant(case["inputs"]), training=False).numpy()
    np.testing.assert_allclose(case["out"]["logits"], expected, atol=1e-5)
    np.testing.assert_array_equal(case["out"]["classes"], expected.argmax(axis=1))
    signature = tf.saved_model.load(case["path"]).signatures["serving_default"]
    assert signature.structured_input_signature[1] == {
        "text": tf.TensorSpec((None, 1), tf.string, name="text")
    }


def test_base_dir_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a folder")
    with pytest.raises(ValueError, match=r"is a file, not a folder\. Expected a folder of"):
        export_saved_model(image_backbone(), target)
    assert target.read_text() == "not a folder"


def test_base_dir_holding_other_things_is_refused_and_named(tmp_path):
    os.makedirs(tmp_path / "src")
    (tmp_path / "notes.txt").write_text("")
    (tmp_path / "7").write_text("a file, not a version folder")
    named = "3 entries and no version folder: ['7', 'notes.txt', 'src']"
    with pytest.raises(ValueError, match=re.escape(named)):
        export_saved_model(image_backbone(), tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["7", "notes.txt", "src"]


def test_empty_or_hidden_only_base_dir_takes_version_one(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".gitkeep").write_text("")
    os.makedirs(tmp_path / "hidden" / ".export-3-leftover")
    for name in ("empty", "hidden"):
        assert export_saved_model(image_backbone(), tmp_path / name) == str(tmp_path / name / "1")
