"""Two replicas (MirroredStrategy on two logical CPUs) against one device, for the whole suite.

Logical devices must be configured before TensorFlow initialises, so every two-replica run
happens in one fresh process (mirrored_worker.py, which documents the factories and
checks), started once for all of them: each process start costs TensorFlow's import.

- Every model that `tfssl.models` exports, found by introspection as in test_contract.py:
  the same global batch on two replicas and on one device gives the same weights and
  losses, and identical copies on the replicas. The one-device run calls its
  `tf.function` for two steps at a time (`steps_per_execution=2`), so every model is also
  shown to train alike with several steps per call, as the scripts and the benchmark do.
- The factories of other test files that need a particular model or pipeline on two
  replicas (`SPECS` names them and says why), compared alike in a process of their own, in
  the integration tier (`make test-integration`).
- Checks of their own: Temporal Ensembling's ensemble with a zero learning rate, Mean
  Teacher's per-replica batch statistics, a NaN on one replica's half of a batch, and
  the `compile` arguments that need one replica.
"""

import numpy as np
import pytest

from tfssl import data, models, testing

MODEL_NAMES = [model_class.__name__ for model_class in testing.model_classes()]

# Factories of other test files (`module:function`), each compared with one device.
SPECS = {
    "test_mean_teacher_bn:mirrored_synchronized_batch":
        "Mean Teacher with synchronized batch normalisation (global batch statistics)",
    "test_label_regularization:make_smoothed_mean_teacher":
        "Mean Teacher with label smoothing",
    "test_label_regularization:make_sigmoid_f1_model":
        "the soft-F1 objective on multi-label rows",
    "test_data_large:make_te_on_a_generator": "Temporal Ensembling fed by a generator",
    "test_mixed_precision:make_te_with_bfloat16_state":
        "an ensemble stored in bfloat16 (the replicas all-gather the update in float32)",
    "test_nonfinite:make_te_with_a_bad_row": "Temporal Ensembling skipping a NaN batch",
    "test_nonfinite:make_mt_with_a_bad_row": "Mean Teacher skipping a NaN batch",
    "test_text_models:make_fasttext_te": "a fastText model on raw strings",
}
PER_REPLICA_BATCH_NORM = "test_mean_teacher_bn:mirrored_per_replica_batch"
ZERO_LEARNING_RATE = "mirrored_worker:ensemble_with_zero_learning_rate"
NAN_ON_ONE_REPLICA = "nonfinite_replicas:nan_on_one_replica"
COMPILE_REFUSALS = "mirrored_worker:compile_refusals_on_two_replicas"


def two_replica_model(name):
    """A `mirrored_worker.py` factory: the model of `build_model` with fixed mixing draws,
    on batches of 16 rows whose halves differ (12 labeled then 4 unlabeled rows, then only
    unlabeled ones), from epoch 100 so that every ramp-up has ended."""
    x, _, y_semi = testing.tiny_data()
    model = testing.build_model(getattr(models, name))
    if hasattr(model, "draw_mixing"):
        testing.fix_mixing_draws(model)
    return model, data.make_dataset(x, y_semi, batch_size=16), {"initial_epoch": 100}


@pytest.fixture(scope="module")
def two_replica_results(mirrored_equivalence):
    model_specs = [f"test_two_replicas:two_replica_model:{name}" for name in MODEL_NAMES]
    checks = [PER_REPLICA_BATCH_NORM, ZERO_LEARNING_RATE, NAN_ON_ONE_REPLICA, COMPILE_REFUSALS]
    return mirrored_equivalence(*model_specs, *checks, timeout=1500)


@pytest.fixture(scope="module")
def factory_results(mirrored_equivalence):
    """The other files' factories, in a process of their own: the integration tier's."""
    return mirrored_equivalence(*SPECS, timeout=1500)


def _result(results, spec):
    """The result of `spec`, failing the test with the error that the spec raised."""
    assert "error" not in results[spec], results[spec]["error"]
    return results[spec]


def _assert_two_replicas_equal_one_device(result):
    assert result["num_replicas"] == 2
    num_variables = result["num_variables"]
    assert num_variables[0] == num_variables[1], num_variables
    # Replicas apply the same all-reduced update: their copies stay bit-identical.
    assert result["copies_differ"] == 0.0, result
    # atol: 6 SGD steps in float32 whose sums run over 8-row halves instead of 16 rows:
    # reassociation of order 1e-7 per step on weights and losses of order 1.
    assert result["weights_differ"] < 1e-5 and result["loss_differ"] < 1e-5, result


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_model_on_two_replicas_equals_one_device(name, two_replica_results):
    _assert_two_replicas_equal_one_device(
        _result(two_replica_results, f"test_two_replicas:two_replica_model:{name}")
    )


# A variant of a model (its options, its pipeline) on two replicas: `make test-integration`
# runs these; `make test` runs every model's own two-replica check above.
@pytest.mark.integration
@pytest.mark.parametrize("spec", list(SPECS), ids=[spec.split(":")[1] for spec in SPECS])
def test_factory_on_two_replicas_equals_one_device(spec, factory_results):
    _assert_two_replicas_equal_one_device(_result(factory_results, spec))


def test_per_replica_batch_statistics_make_two_replicas_differ(two_replica_results):
    # Keras' default per-replica batch statistics: each replica writes its own moving
    # statistics, so the copies differ (as MeanTeacher's docstring says) and so does the
    # run from one device's.
    per_replica = _result(two_replica_results, PER_REPLICA_BATCH_NORM)
    assert per_replica["copies_differ"] > 1e-3
    assert per_replica["weights_differ"] > 1e-4


def test_ensemble_is_one_minus_alpha_to_the_k_times_logits_on_both_replicas(
        two_replica_results):
    results = _result(two_replica_results, ZERO_LEARNING_RATE)
    assert results["lr0_num_replicas"] == 2
    # atol: three float32 multiply-adds of logits of order 1.
    assert results["lr0_max_error"] < 1e-5
    assert results["lr0_copies_differ"] == 0.0


def test_two_replicas_refuse_or_skip_the_step_when_one_replica_has_a_nan(two_replica_results):
    results = _result(two_replica_results, NAN_ON_ONE_REPLICA)
    for name in ("te", "mt"):
        raised = results[f"{name}_raise"]
        assert raised["raised"], name
        assert raised["named_idx"] == raised["expected_idx"], name
        assert raised["bad_rows"] == [11], name
        assert raised["changed"] == [], name
        assert raised["copies_differ"] == 0.0, name
        skipped = results[f"{name}_skip"]
        assert skipped["skipped_steps"] == [1.0], name
        assert np.all(np.isfinite(skipped["loss"])), name
        assert skipped["iterations_added"] == skipped["clean_steps"], name
        assert skipped["copies_differ"] == 0.0, name
    assert set(results["te_skip"]["counts"]) == {2.0}


def test_compile_refuses_what_needs_one_replica(two_replica_results):
    messages = _result(two_replica_results, COMPILE_REFUSALS)
    assert "this model's strategy has 2" in messages["jit_compile"]
    assert "jit_compile=True" in messages["jit_compile"]
    assert "this model's strategy has 2" in messages["steps_per_execution"]
    assert "steps_per_execution=2" in messages["steps_per_execution"]
