"""Tests of the experiment harness in estimators/: the scripts, the demo, the sweep, the loader.

The scripts read Fashion-MNIST through `--data-dir`; here that is a tiny synthetic copy in the
IDX format (500 training rows, 100 test rows, pixel (0, 0) holding the row number modulo 256
so that rows can be traced), so nothing is downloaded and a run takes seconds. A smoke run
checks what the script promises: its printed result line, and that the SavedModel it exports
scores the printed accuracy on the test rows.
"""

import ast
import gzip
import json
import os
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

ESTIMATORS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "estimators")
# The scripts import their neighbours (`_common`, `benchmarking`) as top-level modules, as
# `python estimators/<script>.py` does.
sys.path.insert(0, ESTIMATORS)

import _common  # noqa: E402
import adversarial  # noqa: E402
import demo  # noqa: E402
import distillation  # noqa: E402
import fixmatch  # noqa: E402
import mean_teacher  # noqa: E402
import mixmatch  # noqa: E402
import mixup  # noqa: E402
import pi_model  # noqa: E402
import pseudo_label  # noqa: E402
import reloop  # noqa: E402
import self_training  # noqa: E402
import supervised  # noqa: E402
import sweep  # noqa: E402
import temporal_ensembling  # noqa: E402
import text_classification  # noqa: E402
import vat  # noqa: E402
from benchmarking import protocols  # noqa: E402
from test_text_models import reviews  # noqa: E402
from tfssl import data, datasets, text  # noqa: E402

NUM_TRAIN, NUM_TEST = 500, 100
TINY = ["--epochs", "1", "--batch-size", "50", "--num-labeled", "100", "--train-size", "300",
        "--backbone", "mlp"]
# name, module, its own flags for a smoke run, and one flag of its own that --help shows.
SCRIPTS = [
    ("supervised", supervised, ("--labeled-per-batch", "10"), "--labeled-per-batch"),
    ("pi_model", pi_model, ("--backbone", "conv_net", "--width", "0.125",
                            "--stop-gradient-target", "--strategy", "mirrored"),
     "--stop-gradient-target"),
    ("temporal_ensembling", temporal_ensembling, ("--target", "paper", "--alpha", "0.5",
                                                  "--state-dtype", "bfloat16"), "--alpha"),
    ("mean_teacher", mean_teacher, ("--labeled-per-batch", "10", "--ema-decay", "0.9"),
     "--rampup-ema-decay"),
    ("vat", vat, ("--epsilon", "2.0", "--entropy-minimization"), "--epsilon"),
    ("adversarial", adversarial, ("--method", "pgd", "--attack-epsilons", "0.5", "2.0"),
     "--norm"),
    ("pseudo_label", pseudo_label, ("--threshold", "0.5", "--schedule", "lee", "--t1", "0",
                                    "--t2", "2", "--monitor-rows", "50"), "--schedule"),
    ("fixmatch", fixmatch, ("--labeled-per-batch", "25", "--threshold", "0.5",
                            "--monitor-rows", "50", "--per-batch-ops"), "--lambda-u"),
    ("mixup", mixup, ("--at", "manifold"), "--mixup-layers"),
    ("mixmatch", mixmatch, ("--labeled-per-batch", "25", "--ramp-up-epochs", "1"), "--lambda-u"),
    ("distillation (offline)", distillation, ("--alpha", "0.5"), "--temperature"),
    ("distillation (mutual)", distillation, ("--mode", "mutual", "--temperature", "1"),
     "--students"),
    ("reloop", reloop, ("--weight", "0.3", "--previous-source", "stored", "--warm-start"),
     "--previous-source"),
    ("self_training", self_training, ("--rounds", "1", "--threshold", "0.5",
                                      "--per-class-top-k", "5", "--transductive"), "--rounds"),
]
# What a script prints before its result line, beyond `<name> test accuracy: ...`.
ALSO_PRINTED = {
    "adversarial": ("adversarial FGM epsilon 0.5 test accuracy:",
                    "adversarial FGM epsilon 2.0 test accuracy:"),
    "pseudo_label": ("pseudo_label_accuracy per epoch: [",),
    "fixmatch": ("pseudo_label_accuracy per epoch: [",),
    "distillation (offline)": ("teacher test accuracy:",),
    "reloop": ("previous version test accuracy:",),
    "self_training": ("round 0: trained on 100 rows, added ",),
}


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic Fashion-MNIST: balanced labels, images brighter for higher classes, and
    pixel (0, 0) holding the row number modulo 256."""
    folder = tmp_path_factory.mktemp("fashion-mnist")
    rng = np.random.default_rng(0)
    for split, size in (("train", NUM_TRAIN), ("t10k", NUM_TEST)):
        labels = np.arange(size) % 10
        images = rng.integers(0, 100, (size, 28, 28)) + 15 * labels[:, None, None]
        images[:, 0, 0] = np.arange(size) % 256
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", labels)
    return str(folder)


def _args(module, data_dir, *flags):
    return module.build_parser().parse_args(["--data-dir", data_dir, *TINY, *flags])


def _exported_accuracy(path, x, y):
    """Accuracy of the `serving_default` signature of the SavedModel at `path` on `(x, y)`."""
    serve = tf.saved_model.load(path).signatures["serving_default"]
    (input_name,) = serve.structured_input_signature[1]
    classes = serve(**{input_name: tf.constant(x)})["classes"].numpy()
    return float(np.mean(classes == y))


# ---------------------------------------------------------------------- the harness' imports
HARNESS = sorted(
    [name[:-3] for name in os.listdir(ESTIMATORS) if name.endswith(".py")]
    + ["benchmarking." + name[:-3]
       for name in os.listdir(os.path.join(ESTIMATORS, "benchmarking"))
       if name.endswith(".py") and name != "__init__.py"]
)


def _harness_imports(module):
    """`(harness modules imported at the top level, harness modules imported elsewhere)`."""
    path = os.path.join(ESTIMATORS, *module.split(".")) + ".py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    top_level = set(tree.body)
    top, nested = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found = {name for name in names if name in HARNESS}
        (top if node in top_level else nested).update(found)
    return top, nested


def test_the_harness_has_no_import_circle():
    graph = {}
    for module in HARNESS:
        graph[module], nested = _harness_imports(module)
        # An import inside a function is how a circle is dodged.
        assert not nested, f"{module} imports {nested} inside a function"
    visiting, done = [], set()

    def visit(module):
        assert module not in visiting, f"import circle: {' -> '.join(visiting + [module])}"
        if module in done:
            return
        visiting.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in HARNESS:
        visit(module)
    assert "benchmarking.runner" in graph["benchmark"]  # the scan sees the imports


# One fresh interpreter (TensorFlow's import makes each ~8 s) for what needs one:
# 1. each harness module imported with no other harness module loaded;
# 2. `python estimators/demo.py --help` as the command line runs it (as `__main__`, with only
#    the scripts' folder on the path and no harness module loaded): the demo imports the others
#    as `make demo` runs it, so their module-level imports are exercised too;
# 3. the text script's TE run under the mirrored strategy on two logical CPUs: logical devices
#    must be configured before TensorFlow initialises, which the pytest process has done, so
#    they are configured first thing. It reports the replicas of the strategy the script made.
# Each part prints a line of its own, so that each test reads its part only.
FRESH_PROCESS = """
import importlib, json, runpy, sys
text_argv = sys.argv[1:]
import tensorflow as tf
cpu = tf.config.list_physical_devices('CPU')[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, {estimators!r})
def unload():
    for loaded in [m for m in sys.modules if m.split('.')[0] in {packages!r}]:
        del sys.modules[loaded]
for name in {harness!r}:
    unload()
    importlib.import_module(name)
print('imported', len({harness!r}))
unload()
sys.argv = [{demo!r}, '--help']
print('--- demo --help', flush=True)
try:
    runpy.run_path({demo!r}, run_name='__main__')
except SystemExit as exit:
    print('--- exit code', exit.code, flush=True)
import _common, text_classification
strategies = []
def make_strategy(args, make=_common.make_strategy):
    strategies.append(make(args))
    return strategies[-1]
_common.make_strategy = make_strategy
parsed = text_classification.build_parser().parse_args(text_argv)
accuracy = text_classification.run(parsed)
print(json.dumps({{'accuracy': accuracy,
                  'replicas': [s.num_replicas_in_sync for s in strategies]}}))
"""


@pytest.fixture(scope="module")
def fresh_process(review_dir, tmp_path_factory):
    """`(completed process, argv of its text run, the text run's export folder)`."""
    export_dir = tmp_path_factory.mktemp("text_export")
    argv = text_argv("te", review_dir, "--strategy", "mirrored", "--export", str(export_dir))
    code = FRESH_PROCESS.format(
        estimators=ESTIMATORS, harness=HARNESS, demo=os.path.join(ESTIMATORS, "demo.py"),
        packages=sorted({m.split(".")[0] for m in HARNESS}),
    )
    completed = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                               text=True, timeout=600)
    return completed, argv, export_dir


@pytest.mark.slow
def test_each_harness_module_imports_alone(fresh_process):
    completed, _, _ = fresh_process
    assert f"imported {len(HARNESS)}" in completed.stdout.splitlines(), completed.stderr[-3000:]


# ---------------------------------------------------------------------- flags and data
@pytest.mark.slow
def test_help_from_the_command_line(fresh_process):
    completed, _, _ = fresh_process
    out = completed.stdout
    assert "--- demo --help" in out and "--- exit code 0" in out, completed.stderr[-3000:]
    help_text = out[out.index("--- demo --help"):out.index("--- exit code 0")]
    for flag in ("--data-dir", "--seed", "--export", "--permute-rows", "--label-noise",
                 "--stop-gradient-target", "saved_models"):
        assert flag in help_text


@pytest.mark.parametrize("module, own_flag",
                         [(module, flag) for _, module, _, flag in SCRIPTS]
                         + [(demo, "--max-unsupervised-weight")],
                         ids=[name for name, *_ in SCRIPTS] + ["demo"])
def test_help(module, own_flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--train-size", "--strategy", "--export", "--tensorboard",
                 "--steps-per-execution", own_flag):
        assert flag in out
    assert module.__doc__.splitlines()[0] in out


def test_flags_reject_a_non_positive_count_and_a_rate_above_one(capsys):
    with pytest.raises(SystemExit):
        temporal_ensembling.build_parser().parse_args(["--epochs", "0"])
    assert "Received: 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        demo.build_parser().parse_args(["--label-noise", "1.5"])
    assert "Received: 1.5" in capsys.readouterr().err


def test_load_data_scales_images_and_keeps_balanced_labels(data_dir):
    args = _args(supervised, data_dir, "--train-size", "200", "--test-size", "30")
    (x, y_semi), (x_test, y_test) = _common.load_data(args)
    assert x.shape == (200, 28, 28, 1) and x.dtype == np.float32
    assert x_test.shape == (30, 28, 28, 1) and y_test.shape == (30,)
    raw = np.frombuffer(
        gzip.open(os.path.join(data_dir, "train-images-idx3-ubyte.gz")).read(), np.uint8, offset=16
    )
    # float32 division of integers below 256: exact to float32's half ulp.
    np.testing.assert_allclose(x[:, :, :, 0], raw[: 200 * 784].reshape(200, 28, 28) / 255.0,
                               rtol=1e-7)
    np.testing.assert_array_equal(np.bincount(y_semi[y_semi >= 0]), [10] * 10)
    assert np.sum(y_semi == -1) == 100


@pytest.mark.parametrize("flag, value", [("--train-size", "501"), ("--test-size", "101")])
def test_load_data_rejects_a_size_beyond_the_data(data_dir, flag, value):
    args = _args(supervised, data_dir, flag, value)
    name = flag[2:].replace("-", "_").replace("test_size", "test_rows")
    with pytest.raises(ValueError, match=f"Received: {name}={value}"):
        _common.load_data(args)


def test_load_data_permutes_rows_and_corrupts_labels(data_dir):
    plain = _args(demo, data_dir, "--train-size", "200", "--label-noise", "0")
    (x, y_clean), _ = _common.load_data(plain)
    np.testing.assert_allclose(x[:, 0, 0, 0] * 255, np.arange(200), atol=1e-3)

    noisy = _args(demo, data_dir, "--train-size", "200", "--permute-rows", "7")
    assert noisy.label_noise == 0.5  # the demo's default
    (x_perm, y_noisy), _ = _common.load_data(noisy)
    order = np.random.default_rng(7).permutation(NUM_TRAIN)[:200]
    np.testing.assert_allclose(x_perm[:, 0, 0, 0] * 255, order % 256, atol=1e-3)
    # Same labeled rows as a clean run on these rows, half of their labels changed.
    (_, y_perm_clean), _ = _common.load_data(
        _args(demo, data_dir, "--train-size", "200", "--permute-rows", "7", "--label-noise", "0")
    )
    np.testing.assert_array_equal(y_noisy == -1, y_perm_clean == -1)
    assert np.sum(y_noisy != y_perm_clean) == 50
    np.testing.assert_array_equal(
        y_noisy, data.noisy_labels(y_perm_clean, 0.5, seed=0, num_classes=10)
    )
    assert not np.array_equal(y_clean, y_perm_clean)


def test_validation_rows_come_from_the_end_of_the_training_rows(data_dir):
    rows = protocols.load_rows(300, num_labeled=100, seed=0, validation_rows=100,
                               data_dir=data_dir)
    np.testing.assert_allclose(rows["x_test"][:, 0, 0, 0] * 255, np.arange(400, 500) % 256,
                               atol=1e-3)
    np.testing.assert_array_equal(rows["y_test"], np.arange(400, 500) % 10)
    assert len(rows["x"]) == 300 and np.sum(rows["y_semi"] >= 0) == 100
    with pytest.raises(ValueError, match="train_size=300"):
        protocols.load_rows(300, num_labeled=100, validation_rows=201, data_dir=data_dir)


@pytest.mark.parametrize(
    "flags, expected",
    [((), 6), (("--labeled-per-batch", "10"), 5), (("--batch-size", "70"), 5)],
)
def test_steps_per_epoch_matches_the_semi_supervised_pipeline(data_dir, flags, expected):
    # 300 rows with 100 labeled: ceil(300 / 50) = 6; with 10 labeled per batch the 200
    # unlabeled rows come 40 a batch, ceil(200 / 40) = 5; ceil(300 / 70) = 5.
    args = _args(supervised, data_dir, *flags)
    (_, y_semi), _ = _common.load_data(args)
    assert _common.steps_per_epoch(y_semi, args) == expected


def test_make_strategy_gives_one_mirrored_strategy_per_process():
    # A second MirroredStrategy over the same devices collides with the first one's
    # collectives ("Collective instance N expected type ..."): every run of a process
    # shares one.
    args = _common.base_parser("").parse_args(["--strategy", "mirrored"])
    first = _common.make_strategy(args)
    assert isinstance(first, tf.distribute.MirroredStrategy)
    assert _common.make_strategy(args) is first


# ---------------------------------------------------------------------- smoke runs
# The runs of more than about 15 s on two shared CPU cores (two stages, a conv_net, RandAugment).
SLOW_RUNS = ("pi_model", "fixmatch", "distillation (offline)", "distillation (mutual)", "reloop")


@pytest.mark.parametrize(
    "name, module, flags",
    [pytest.param(*s[:3], marks=[pytest.mark.slow] * (s[0] in SLOW_RUNS)) for s in SCRIPTS],
    ids=[s[0] for s in SCRIPTS],
)
def test_script_prints_its_accuracy_and_exports_a_model_that_scores_it(
        name, module, flags, data_dir, tmp_path, capsys, monkeypatch):
    export_dir = tmp_path / "export"
    args = _args(module, data_dir, "--test-size", "100", "--export", str(export_dir),
                 "--verbose", "0", *flags)
    # Every model the script trains runs --steps-per-execution steps per call.
    steps_per_execution = []
    keras_compile = keras.Model.compile

    def compile_and_record(model, *compile_args, **compile_kwargs):
        steps_per_execution.append(compile_kwargs.get("steps_per_execution", 1))
        return keras_compile(model, *compile_args, **compile_kwargs)

    monkeypatch.setattr(keras.Model, "compile", compile_and_record)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        accuracy = module.run(args)
    assert steps_per_execution and set(steps_per_execution) == {args.steps_per_execution}
    # The scripts fit shuffled tf.data streams: Keras' own `shuffle` would be ignored.
    messages = [str(warning.message) for warning in caught]
    assert not [m for m in messages if "shuffle=True` was passed" in m], messages
    out = capsys.readouterr().out
    result_line = f"{name} test accuracy: {accuracy:.4f}"
    assert result_line in out.splitlines()
    for printed in ALSO_PRINTED.get(name, ()):
        assert printed in out
    assert f"{name} exported to {export_dir / '1'}" in out
    (_, _), (x_test, y_test) = _common.load_data(args)
    exported = _exported_accuracy(str(export_dir / "1"), x_test, y_test)
    # The SavedModel's graph may round a near-tie of two logits otherwise than Keras'
    # evaluation did: at most one of the 100 rows apart.
    assert abs(exported - accuracy) <= 1 / len(y_test) + 1e-9


def test_presets_print_the_papers_settings_without_training(capsys):
    assert fixmatch.run(fixmatch.build_parser().parse_args(
        ["--preset", "cifar10-40", "--dry-run"])) is None
    out = capsys.readouterr().out
    assert '"num_labeled": 40' in out and '"threshold": 0.95' in out and '"mu": 7' in out
    mixmatch.main(["--preset", "cifar10-4000", "--dry-run"])
    out = capsys.readouterr().out
    assert "lambda_u: 75.0" in out and "num_labeled: 4000" in out
    assert "[cifar10-4000, not a flag] backbone: WRN-28-2" in out


@pytest.mark.slow
def test_demo_prints_the_table_and_exports_the_pi_model(data_dir, tmp_path, capsys):
    export_dir = tmp_path / "fashion_pi"
    (export_dir / "1").mkdir(parents=True)
    args = demo.build_parser().parse_args([
        "--data-dir", data_dir, "--epochs", "1", "--batch-size", "50", "--num-labeled", "100",
        "--test-size", "50", "--train-size", "300", "--labeled-per-batch", "25",
        "--permute-rows", "1", "--seed", "3", "--export", str(export_dir), "--verbose", "0",
    ])
    accuracies = demo.run(args)
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # only the Π-model is exported
    out = capsys.readouterr().out
    assert f"pi_model exported to {export_dir / '2'}" in out
    table = out[out.index("method"):].splitlines()
    assert table[1].split() == ["supervised", f"{accuracies['supervised']:.4f}"]
    assert table[2].split() == ["pi_model", f"{accuracies['pi_model']:.4f}"]
    difference = 100 * (accuracies["pi_model"] - accuracies["supervised"])
    assert f"pi_model - supervised: {difference:+.1f} points" in out
    assert "permutation 1" in out and "50% of the labels wrong" in out and "seed 3" in out
    (_, _), (x_test, y_test) = _common.load_data(args)
    exported = _exported_accuracy(str(export_dir / "2"), x_test, y_test)
    # As in the scripts' test: at most one near-tie of the 50 rows apart.
    assert abs(exported - accuracies["pi_model"]) <= 1 / len(y_test) + 1e-9


# ---------------------------------------------------------------------- the sweep
def test_sweep_quick_writes_the_records_the_report_renders(data_dir, tmp_path, capsys):
    output = tmp_path / "sweep.json"
    previous = {"method": "pi_model", "param": "max_unsupervised_weight", "value": 1.0,
                "seed": 9, "val_accuracy": 0.5, "protocol": "main-10k-8ep-val5000"}
    output.write_text(json.dumps([previous]))
    sweep.main(["--grid", "consistency", "--quick", "--methods", "pi_model", "--seeds", "0",
                "--data-dir", data_dir, "--output", str(output)])
    records = json.loads(output.read_text())
    assert records[0] == previous  # other records are kept
    fresh = records[1:]
    assert [(r["param"], r["value"]) for r in fresh] == [
        ("max_unsupervised_weight", 10.0), ("max_unsupervised_weight", 30.0),
        ("max_unsupervised_weight", 100.0), ("ramp_up_epochs", 1), ("ramp_up_epochs", 3),
        ("labeled_per_batch", 25), ("labeled_per_batch", 50),
    ]
    command = "python estimators/sweep.py --grid consistency --methods pi_model --seeds 0 --quick"
    for record in fresh:
        assert record["method"] == "pi_model" and record["seed"] == 0
        assert record["protocol"] == "main-10k-8ep-val5000" and record["command"] == command
    # The grid's settings (w 30, ramp-up 3, 50 labeled a batch) trained once: one accuracy.
    by_setting = {(r["param"], r["value"]): r["val_accuracy"] for r in fresh}
    assert by_setting[("max_unsupervised_weight", 30.0)] == by_setting[("ramp_up_epochs", 3)]
    assert by_setting[("max_unsupervised_weight", 30.0)] == by_setting[("labeled_per_batch", 50)]
    assert capsys.readouterr().out.count("validation accuracy") == 5


def test_sweep_refuses_a_grid_without_the_methods():
    with pytest.raises(ValueError, match="Received: methods=\\['vat'\\]"):
        sweep.run_grid("consistency", [0], methods=["vat"])
    with pytest.raises(ValueError, match="Received: grid='nope'"):
        sweep.run_grid("nope", [0])


def test_sweep_points_are_registry_hyper_parameters():
    for grid in sweep.GRIDS.values():
        for method, change in grid.points:
            hyper = sweep.METHODS[method].hyper
            assert set(change) <= set(hyper) | {"labeled_per_batch"}, (method, change)


# ---------------------------------------------------------------------- the text script
@pytest.fixture(scope="module")
def review_dir(tmp_path_factory):
    """`pos.txt` and `neg.txt` of 300 short mixed Chinese and English reviews."""
    folder = tmp_path_factory.mktemp("reviews")
    x, y = reviews(300, seed=3)
    for name, label in (("pos.txt", 1), ("neg.txt", 0)):
        (folder / name).write_text("\n".join(x[y == label]) + "\n", encoding="utf-8")
    return str(folder)


def text_argv(method, review_dir, *flags):
    return [
        "--method", method, "--labels", "20", "--data-dir", review_dir, "--epochs", "1",
        "--batch-size", "32", "--labeled-per-batch", "8", "--supervised-batch-size", "8",
        "--num-buckets", "512", "--embedding-dim", "8", "--verbose", "0", *flags,
    ]  # fmt: skip


# A run's time goes almost all into tracing tensorflow-text's tokenizer (each trace of the
# backbone's `TextVectorizer` builds thousands of ops: 1.5-2 s), once per traced call of the
# backbone: the train step (twice), the evaluation and the export's serving function (twice).
# The methods differ only in the model the table `METHODS` builds, and every model is trained,
# served from a fresh process and checked against its formulas in tests/test_contract.py and
# tests/test_text_models.py. So a full run, export and score here is one per kind of line of
# the table: a model with a strong text view (`fixmatch`, a consistency method as well) and a
# two-stage method (`reloop`: its first stage is the plain Keras backbone trained on the labels
# as `supervised` and `distill`'s teacher are); Temporal Ensembling (a consistency method with
# per-text state) has its full run, export and score under the mirrored strategy below, and
# the `supervised` line runs to its printed accuracy in the validation test below (its export
# is `_common.evaluate_and_export`'s, as for the others, and a plain Keras model's export is
# checked by the image `supervised` script's smoke run). Every line of the table is checked by
# what it builds from the flags (`test_text_methods_table_builds_each_model_from_the_flags`).
FULL_TEXT_RUNS = ("fixmatch", "reloop")


@pytest.mark.slow
@pytest.mark.parametrize("method", FULL_TEXT_RUNS)
def test_text_script_runs_and_exports_what_it_scores(method, review_dir, tmp_path, capsys):
    args = text_classification.build_parser().parse_args(
        text_argv(method, review_dir, "--export", str(tmp_path)))
    accuracy = text_classification.run(args)
    out = capsys.readouterr().out
    assert f"text_classification[{method}] test accuracy: {accuracy:.4f}" in out.splitlines()
    assert "last epoch: " in out
    if method in text_classification.FIRST_STAGE:
        assert f"{text_classification.FIRST_STAGE[method]} test accuracy: " in out
    _, (x_test, y_test) = text_classification.load_data(args)
    exported = _exported_accuracy(str(tmp_path / "1"), np.asarray(x_test, dtype=str), y_test)
    # As in the image scripts' test: at most one near-tie of the test texts apart.
    assert abs(exported - accuracy) <= 1 / len(y_test) + 1e-9


# Flags away from their defaults, and what each line of `METHODS` must build from them: the
# registry's model class and the settings the table gives it.
TEXT_FLAGS = ("--alpha", "0.5", "--ema-decay", "0.9", "--temperature", "2",
              "--distill-alpha", "0.25", "--students", "3", "--reloop-weight", "0.7")
TEXT_MODELS = {
    "pi": ("pi_model", {}),
    "te": ("temporal_ensembling", {"alpha": 0.5}),
    "mt": ("mean_teacher", {"ema_decay": 0.9, "rampup_ema_decay": 0.9, "ema_warmup": True}),
    "mixup": ("mixup", {"alpha": 0.2, "at": "encoder"}),
    "pseudo": ("pseudo_label", {}),
    "fixmatch": ("fixmatch", {}),
    "fgm": ("adversarial", {"method": "fgm", "epsilon": 1.0}),
    "vat": ("vat", {"epsilon": 5.0}),
    "distill": ("distiller", {"temperature": 2.0, "alpha": 0.25}),
    "mutual": ("mutual_learning", {"temperature": 2.0}),
    "reloop": ("reloop", {"weight": 0.7}),
}
# The lines that give their model the number of training texts (`num_samples`).
TEXT_NUM_SAMPLES = ("pi", "te", "mt", "pseudo", "fixmatch")


def test_text_methods_table_has_a_model_check_for_every_method():
    assert sorted(TEXT_MODELS) == sorted(m for m, f in text_classification.METHODS.items() if f)
    assert text_classification.METHODS["supervised"] is None  # the plain backbone


# No data is read: the test stays in the fast suite (tests/conftest.py marks the tests that
# take `review_dir` slow).
@pytest.mark.parametrize("method", sorted(TEXT_MODELS))
def test_text_methods_table_builds_each_model_from_the_flags(method):
    args = text_classification.build_parser().parse_args(
        text_argv(method, "no-data-read", *TEXT_FLAGS))
    registry_name, settings = TEXT_MODELS[method]
    first_stage = ([text_classification.build_backbone(args)]
                   if method in text_classification.FIRST_STAGE else [])
    model = text_classification.METHODS[method](
        text_classification.build_backbone(args), 240, args, *first_stage)
    assert type(model) is text_classification.REGISTRY[registry_name].model
    config = model.get_config()
    assert {key: config[key] for key in settings} == settings
    assert config["supervised_normalize"] == args.supervised_normalize == "labeled"
    assert config["num_samples"] == (240 if method in TEXT_NUM_SAMPLES else None)
    if method == "distill":
        assert model.teacher is first_stage[0]
    if method == "reloop":
        assert model.previous_model is first_stage[0]
    if method == "mutual":
        assert len(config["models"]) == 3  # --students
    if method in ("pseudo", "fixmatch"):
        policy = config["pseudo_label_policy"]
        assert (policy["class_name"], policy["config"]["threshold"]) == ("FixedThreshold", 0.95)
    if method == "fixmatch":
        assert isinstance(model.weak_augment, keras.layers.Identity)
        assert isinstance(model.strong_augment, text.WordDropout)
        assert model.strong_augment.rate == 0.3


@pytest.mark.slow
def test_text_script_reports_validation_accuracy(review_dir, capsys):
    argv = text_argv("supervised", review_dir, "--token-dropout", "0.2", "--train-size", "150",
                     "--validation-size", "64")
    accuracy = text_classification.run(text_classification.build_parser().parse_args(argv))
    out = capsys.readouterr().out
    assert f"text_classification[supervised] validation accuracy: {accuracy:.4f}" in out
    assert "test accuracy" not in out
    assert "last epoch: accuracy=" in out


def test_text_validation_texts_are_the_last_training_texts(review_dir):
    parse = text_classification.build_parser().parse_args
    argv = ["--data-dir", review_dir, "--labels", "20"]
    (x_all, y_all), (x_test, _) = datasets.load_chinese_sentiment(review_dir, split=True)
    (x, y_semi), (x_val, y_val) = text_classification.load_data(
        parse(argv + ["--train-size", "100", "--validation-size", "50"])
    )
    np.testing.assert_array_equal(x, x_all[:100])
    np.testing.assert_array_equal(x_val, x_all[-50:])
    np.testing.assert_array_equal(y_val, y_all[-50:])
    assert not set(x_val) & (set(x) | set(x_test))
    assert np.sum(y_semi != -1) == 20
    # Without --train-size, every other training text trains.
    (x, _), _ = text_classification.load_data(parse(argv + ["--validation-size", "50"]))
    np.testing.assert_array_equal(x, x_all[:-50])
    with pytest.raises(ValueError, match="validation_size=300"):
        text_classification.load_data(
            parse(argv + ["--train-size", "100", "--validation-size", "300"])
        )


def test_text_script_pretrain_embeddings_flags(review_dir, tmp_path, monkeypatch):
    argv = ["--labels", "20", "--data-dir", review_dir, "--num-buckets", "512"]
    args = text_classification.build_parser().parse_args(
        argv + ["--embedding-dim", "8", "--pretrain-embeddings", "--pretrain-size", "200"]
    )
    # What the flags pass to pretrain_embeddings, and that its matrix is the backbone's
    # (pretrain_embeddings itself is checked against its formula in test_text.py).
    calls = []
    matrix = np.random.default_rng(0).normal(size=(512, 8)).astype("float32")

    def pretrain(texts, vectorizer, dim, **kwargs):
        calls.append((np.asarray(texts), vectorizer.get_config(), dim, kwargs))
        return matrix

    monkeypatch.setattr(text_classification.text, "pretrain_embeddings", pretrain)
    (x, _), _ = text_classification.load_data(args)
    args.initial_embeddings = text_classification.initial_embeddings(args, args.pretrain_texts)
    backbone = text_classification.build_backbone(args)
    (all_x, _), _ = datasets.load_chinese_sentiment(review_dir, split=True)
    ((texts, vectorizer_config, dim, kwargs),) = calls
    np.testing.assert_array_equal(texts, all_x[:200])  # the first 200 training texts
    assert (vectorizer_config["num_buckets"], dim, kwargs) == (512, 8, {"seed": args.seed})
    np.testing.assert_array_equal(backbone.get_layer("embedding").get_weights()[0], matrix)
    # Never the validation texts: they are the last ones of the training split.
    args = text_classification.build_parser().parse_args(
        argv + ["--pretrain-size", str(len(all_x)), "--validation-size", "10"]
    )
    with pytest.raises(ValueError, match=f"pretrain_size={len(all_x)}"):
        text_classification.load_data(args)
    path = tmp_path / "vectors.txt"
    path.write_text("好 1 0 0 0 0 0 0 0\n", encoding="utf-8")
    args = text_classification.build_parser().parse_args(
        argv + ["--embedding-dim", "8", "--embeddings", str(path)]
    )
    args.initial_embeddings = text_classification.initial_embeddings(args)
    embedding = text_classification.build_backbone(args).get_layer("embedding")
    bucket = text.TextVectorizer(num_buckets=512).token_ids(["好"])[0]
    np.testing.assert_array_equal(embedding.get_weights()[0][bucket], [1, 0, 0, 0, 0, 0, 0, 0])
    args.pretrain_embeddings = True
    with pytest.raises(ValueError, match="not both"):
        text_classification.initial_embeddings(args, x)


@pytest.mark.slow
def test_text_script_trains_te_under_mirrored_strategy_on_two_cpus_and_exports_what_it_scores(
        fresh_process):
    completed, argv, export_dir = fresh_process  # the run's process has two logical CPUs
    assert completed.returncode == 0, completed.stderr[-5000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [2]
    out = completed.stdout.splitlines()
    assert f"text_classification[te] test accuracy: {result['accuracy']:.4f}" in out
    assert f"text_classification[te] exported to {export_dir / '1'}" in out
    assert any(line.startswith("last epoch: ") for line in out)
    _, (x_test, y_test) = text_classification.load_data(
        text_classification.build_parser().parse_args(argv))
    exported = _exported_accuracy(str(export_dir / "1"), np.asarray(x_test, dtype=str), y_test)
    # As in the single-device runs: at most one near-tie of the test texts apart.
    assert abs(exported - result["accuracy"]) <= 1 / len(y_test) + 1e-9


@pytest.mark.parametrize(
    "method, strategy",
    [("supervised", "mirrored"), ("supervised", "multiworker"), ("distill", "multiworker"),
     ("reloop", "multiworker")],
)
def test_text_script_plain_keras_methods_refuse_a_strategy(method, strategy, review_dir):
    args = text_classification.build_parser().parse_args(text_argv(method, review_dir))
    # Set after parsing: parsing "multiworker" would configure this process's collectives.
    args.strategy = strategy
    with pytest.raises(ValueError, match=f"strategy='{strategy}'"):
        text_classification.run(args)


def test_te_script_stores_the_ensemble_in_bfloat16(data_dir, monkeypatch):
    args = _args(temporal_ensembling, data_dir, "--state-dtype", "bfloat16")
    trained = []
    fit_and_export = _common.fit_and_export

    def keep_model(name, model, *rest, **kwargs):
        trained.append(model)
        return fit_and_export(name, model, *rest, **kwargs)

    monkeypatch.setattr(_common, "fit_and_export", keep_model)
    accuracy = temporal_ensembling.run(args)
    (model,) = trained
    assert model.ensemble.dtype == "bfloat16"
    assert model.ensemble_counts.dtype == "float32"  # counts stay exact past 256
    # Every row was averaged in once per epoch, so the stored logits are not the zeros
    # they started from.
    np.testing.assert_array_equal(model.ensemble_counts.numpy(), args.epochs)
    assert np.all(np.abs(model.ensemble.numpy().astype("float32")).sum(axis=1) > 0)
    x_test, y_test = _common.load_data(args)[1]
    predictions = model.predict(x_test, batch_size=args.batch_size, verbose=0).argmax(axis=1)
    # A ratio of counts, accumulated by Keras in float32 (unit roundoff 6e-8).
    np.testing.assert_allclose(accuracy, np.mean(predictions == y_test), atol=1e-6)
