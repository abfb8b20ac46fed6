"""Exports checked by TensorFlow's own SavedModel client, `saved_model_cli`.

`saved_model_cli show --all` must list the `serving_default` signature with its named input
and outputs and their dtypes, as TF Serving reads them; `saved_model_cli run` must return
what the Keras model predicts. An image model and a raw-string text model are covered.

The text model's graph holds tensorflow-text ops (`tfssl.text.TEXT_OPS`): the client alone
cannot run it (the test checks that it names the missing op), and it runs once
`tensorflow_text` is imported, as in any Python process that serves such an export.

All commands run in ONE fresh process (each fresh process pays TensorFlow's import): the
client's `main`, the function the `saved_model_cli` console script calls, once per command,
first every command without tensorflow-text, then `import tensorflow_text` and the text
model's `run`.
"""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfssl
from serving_utils import WITHOUT_TRAINING_PACKAGES

pytestmark = pytest.mark.slow  # every test reads the one fresh process's results

NUM_CLASSES = 10
TEXTS = ["很好，下次还来", "bad movie", "ＡＢＣ１２３！", "so so", ""]
# Runs `saved_model_cli` commands in one process: argv[1] names a JSON list of commands
# ({"args", "with_text_ops"}), argv[2] the JSON file of their {"stdout", "error"}. A command
# with text ops first imports tensorflow_text (it stays imported for the later ones). The
# client keeps its absl flags between calls: they are reset to their defaults before each,
# but a `run` leaves --tag_set and --signature_def marked required, so `show`s come first.
CLI_DRIVER = WITHOUT_TRAINING_PACKAGES + r"""
import contextlib
import io
import json
import sys
import traceback

from absl import flags
from tensorflow.python.tools.saved_model_cli import main

commands_file, results_file = sys.argv[1:3]
results = []
for command in json.load(open(commands_file)):
    if command["with_text_ops"]:
        import tensorflow_text  # noqa: F401
    flags.FLAGS.unparse_flags()
    sys.argv = ["saved_model_cli", *command["args"]]
    stdout, error = io.StringIO(), None
    try:
        with contextlib.redirect_stdout(stdout):
            main()
    except SystemExit as exit:
        if exit.code:
            error = f"exited with {exit.code}"
    except Exception:
        error = traceback.format_exc()
    results.append({"stdout": stdout.getvalue(), "error": error})
json.dump(results, open(results_file, "w"))
"""
# Exported and Keras predictions run the same float32 ops, fused or reordered differently by
# the graph optimizer: sums of ~100 terms of order 1 differ by a few float32 roundings each
# (eps 1.2e-7), about 1e-5 at most.
FLOAT32_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def run_cli(commands, folder):
    """Runs `(args, with_text_ops)` commands in one fresh process, in order (those with text
    ops last); returns their `{"stdout", "error"}` (`error` None when a command succeeded)."""
    commands_file = os.path.join(folder, "commands.json")
    results_file = os.path.join(folder, "results.json")
    with open(commands_file, "w") as f:
        json.dump([{"args": a, "with_text_ops": t} for a, t in commands], f)
    result = subprocess.run(
        [sys.executable, "-c", CLI_DRIVER, commands_file, results_file],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if result.returncode != 0:
        raise AssertionError(f"saved_model_cli failed:\n{result.stderr[-3000:]}")
    with open(results_file) as f:
        return json.load(f)


def succeeded(result):
    assert result["error"] is None, result["error"][-3000:]
    return result["stdout"]


def serving_signature(show_output):
    """The `serving_default` block of `show --all`: {"inputs"|"outputs": {name: (dtype,
    shape)}, "method": name}."""
    block = show_output.split("signature_def['serving_default']:")[1]
    block = block.split("signature_def[")[0].split("The MetaGraph with tag set")[0]
    inputs_text, outputs_text = block.split("contains the following output(s):")
    pattern = re.compile(r"\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (.+)")

    def tensors(text):
        return {name: (dtype, shape.strip()) for name, dtype, shape in pattern.findall(text)}

    return {
        "inputs": tensors(inputs_text),
        "outputs": tensors(outputs_text),
        "method": re.search(r"Method name is: (\S*)", block).group(1),
    }


def graph_ops(show_output):
    ops = re.search(r"contains the following ops: \{(.*)\}", show_output).group(1)
    return {op.strip().strip("'") for op in ops.split(",")}


def run_args(path, input_name, array, outdir):
    """`run` of `serving_default` on `array`, written to `outdir`."""
    os.makedirs(outdir)
    np.save(os.path.join(outdir, "input.npy"), array)
    return [
        "run",
        "--dir", path,
        "--tag_set", "serve",
        "--signature_def", "serving_default",
        "--inputs", f"{input_name}={os.path.join(outdir, 'input.npy')}",
        "--outdir", outdir,
    ]  # fmt: skip


def run_outputs(outdir):
    names = ("logits", "probabilities", "classes")
    return {name: np.load(os.path.join(outdir, f"{name}.npy")) for name in names}


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    backbone = tfssl.backbones.conv_net((28, 28, 1), NUM_CLASSES, width=1 / 32)
    model = tfssl.models.MeanTeacher(backbone)
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    path = tfssl.export.export_saved_model(model, str(tmp_path_factory.mktemp("image")))
    return path, x, model(x, training=False).numpy()


@pytest.fixture(scope="module")
def text_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tfssl.models.PiModel(tfssl.backbones.fasttext(num_classes=2, num_buckets=1000))
    texts = np.array(TEXTS, dtype=object)
    path = tfssl.export.export_saved_model(model, str(tmp_path_factory.mktemp("text")))
    # saved_model_cli reads the batch with numpy: UTF-8 bytes become its tf.string input.
    encoded = np.array([text.encode("utf-8") for text in TEXTS])
    return path, encoded, model(texts, training=False).numpy()


@pytest.fixture(scope="module")
def cli(image_export, text_export, tmp_path_factory):
    """Every command's result by name, and the `run` output folders, from one process."""
    base = tmp_path_factory.mktemp("cli")
    image_path, x, _ = image_export
    text_path, texts, _ = text_export
    outdirs = {name: str(base / name) for name in ("image_run", "stock_text_run", "text_run")}
    commands = {
        "image_show": (["show", "--all", "--dir", image_path], False),
        "text_show": (["show", "--all", "--dir", text_path], False),
        "image_run": (run_args(image_path, "x", x, outdirs["image_run"]), False),
        "stock_text_run": (run_args(text_path, "text", texts, outdirs["stock_text_run"]), False),
        "text_run": (run_args(text_path, "text", texts, outdirs["text_run"]), True),
    }
    results = run_cli(list(commands.values()), str(base))
    return dict(zip(commands, results)), outdirs


def test_show_lists_the_image_signature(cli):
    show = succeeded(cli[0]["image_show"])
    assert serving_signature(show) == {
        "inputs": {"x": ("DT_FLOAT", "(-1, 28, 28, 1)")},
        "outputs": {
            "classes": ("DT_INT64", "(-1)"),
            "logits": ("DT_FLOAT", f"(-1, {NUM_CLASSES})"),
            "probabilities": ("DT_FLOAT", f"(-1, {NUM_CLASSES})"),
        },
        "method": "tensorflow/serving/predict",
    }
    assert "x: TensorSpec(shape=(None, 28, 28, 1), dtype=tf.float32, name='x')" in show


def test_run_returns_the_image_model_predictions(cli, image_export):
    _, _, expected = image_export
    succeeded(cli[0]["image_run"])
    outputs = run_outputs(cli[1]["image_run"])
    assert outputs["logits"].dtype == np.float32 and outputs["classes"].dtype == np.int64
    np.testing.assert_allclose(outputs["logits"], expected, **FLOAT32_TOLERANCE)
    softmax = np.exp(expected - expected.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs["probabilities"], softmax, **FLOAT32_TOLERANCE)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(outputs["logits"], axis=1))


def test_show_lists_the_text_signature_and_its_tensorflow_text_ops(cli):
    show = succeeded(cli[0]["text_show"])
    assert serving_signature(show) == {
        "inputs": {"text": ("DT_STRING", "(-1)")},
        "outputs": {
            "classes": ("DT_INT64", "(-1)"),
            "logits": ("DT_FLOAT", "(-1, 2)"),
            "probabilities": ("DT_FLOAT", "(-1, 2)"),
        },
        "method": "tensorflow/serving/predict",
    }
    assert set(tfssl.text.TEXT_OPS) <= graph_ops(show)


def test_stock_run_names_the_missing_tensorflow_text_op(cli):
    error = cli[0]["stock_text_run"]["error"]
    assert error is not None
    missing = re.search(r"Op type not registered '(\w+)'", error).group(1)
    assert missing in tfssl.text.TEXT_OPS
    assert os.listdir(cli[1]["stock_text_run"]) == ["input.npy"]  # no output written


def test_run_with_tensorflow_text_returns_the_text_model_predictions(cli, text_export):
    _, _, expected = text_export
    succeeded(cli[0]["text_run"])
    outputs = run_outputs(cli[1]["text_run"])
    assert outputs["logits"].shape == (len(TEXTS), 2)
    np.testing.assert_allclose(outputs["logits"], expected, **FLOAT32_TOLERANCE)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(outputs["logits"], axis=1))
