"""Every tfssl model family exports its inference graph only, and it serves as TF Serving
would load it: in a fresh process that imports only TensorFlow."""

import os

import keras
import numpy as np
import pytest

from serving_utils import folder_size, serve_many_in_fresh_process
from tfssl import backbones, data, export, models, testing


def _trained(model):
    x, _, y_semi = testing.tiny_data(num_samples=model.num_samples)
    model.compile(optimizer="adam")
    model.fit(data.make_dataset(x[:48], y_semi[:48], 16), epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    keras.utils.set_random_seed(0)
    base = tmp_path_factory.mktemp("exports")
    x, _, _ = testing.tiny_data()
    families = {
        "pi_model": models.PiModel(testing.tiny_backbone(), 48, 3),
        "temporal_ensembling": models.TemporalEnsembling(testing.tiny_backbone(), 48, 3),
        "mean_teacher": models.MeanTeacher(testing.tiny_backbone(), 48, 3, rampup_ema_decay=0.5),
    }
    runs = []
    for name, model in families.items():
        _trained(model)
        for which in ("default", "student") if name == "mean_teacher" else ("default",):
            path = export.export_saved_model(model, str(base / name), which=which)
            expected = model.serving_model(which).predict(x, verbose=0)
            runs.append((f"{name}-{which}", path, expected))
    served = serve_many_in_fresh_process([(path, "x", x) for _, path, _ in runs])
    return {key: (path, expected, out) for (key, path, expected), out in zip(runs, served)}


@pytest.mark.parametrize(
    "key",
    [
        "pi_model-default",
        "temporal_ensembling-default",
        "mean_teacher-default",
        "mean_teacher-student",
    ],
)
def test_fresh_process_serving_matches_predict(exports, key):
    _, expected, outputs = exports[key]
    assert set(outputs) == {"logits", "probabilities", "classes"}
    np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
    assert outputs["classes"].dtype == np.int64
    np.testing.assert_array_equal(outputs["classes"], np.argmax(expected, axis=1))


def test_mean_teacher_exports_the_teacher_by_default(exports):
    teacher = exports["mean_teacher-default"][2]["logits"]
    student = exports["mean_teacher-student"][2]["logits"]
    assert np.max(np.abs(teacher - student)) > 1e-4


def test_two_million_sample_ensemble_stays_out_of_the_export(tmp_path):
    model = models.TemporalEnsembling(
        backbones.conv_net((28, 28, 1), 10, width=0.25), num_samples=2_000_000, num_classes=10
    )
    assert model.ensemble.numpy().nbytes == 80_000_000
    first = export.export_saved_model(model, str(tmp_path))
    second = export.export_saved_model(model, str(tmp_path))
    assert os.path.basename(first) == "1" and os.path.basename(second) == "2"
    assert folder_size(first) < 5_000_000
