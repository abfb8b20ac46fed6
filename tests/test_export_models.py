"""Mean Teacher exports the teacher or the student, and Temporal Ensembling's per-sample
ensemble stays out of the export.

The exports are loaded in this process. That the export of every model family serves in a
fresh process that imports only TensorFlow is tests/test_contract.py's
(`test_fresh_process_serving_matches_predict`, Mean Teacher's teacher included), and that a
`which=` export does is tests/test_export.py's."""

import keras
import numpy as np
import pytest

import tensorflow as tf

from serving_utils import folder_size
from tfssl import data, export, models, testing


def _trained(model):
    x, _, y_semi = testing.tiny_data(num_samples=model.num_samples)
    model.compile(optimizer="adam")
    model.fit(data.make_dataset(x[:48], y_semi[:48], 16), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def mean_teacher_exports(tmp_path_factory):
    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("exports")
    x, _, _ = testing.tiny_data()
    model = _trained(models.MeanTeacher(testing.tiny_backbone(), 48, 3, rampup_ema_decay=0.5))
    runs = []
    for which in ("default", "student"):
        path = export.export_saved_model(model, str(base / "mean_teacher"), which=which)
        expected = model.serving_model(which)(x, training=False).numpy()
        runs.append((f"mean_teacher-{which}", path, expected))
    served = [
        {
            name: value.numpy()
            for name, value in tf.saved_model.load(path)
            .signatures["serving_default"](x=tf.constant(x))
            .items()
        }
        for _, path, _ in runs
    ]
    return {key: (path, expected, out) for (key, path, expected), out in zip(runs, served)}


@pytest.mark.parametrize("key", ["mean_teacher-default", "mean_teacher-student"])
def test_export_serves_what_the_chosen_network_predicts(mean_teacher_exports, key):
    _, expected, outputs = mean_teacher_exports[key]
    assert set(outputs) == {"logits", "probabilities", "classes"}
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
    assert outputs["classes"].dtype == np.int64
    np.testing.assert_array_equal(outputs["classes"], np.argmax(expected, axis=1))


def test_mean_teacher_exports_the_teacher_by_default(mean_teacher_exports):
    teacher = mean_teacher_exports["mean_teacher-default"][2]["logits"]
    student = mean_teacher_exports["mean_teacher-student"][2]["logits"]
    assert np.max(np.abs(teacher - student)) > 1e-4


def test_two_million_sample_ensemble_stays_out_of_the_export(tmp_path):
    model = models.TemporalEnsembling(
        testing.tiny_backbone(num_classes=10), num_samples=2_000_000, num_classes=10
    )
    assert model.ensemble.numpy().nbytes == 80_000_000
    path = export.export_saved_model(model, str(tmp_path))
    assert folder_size(path) < 5_000_000
