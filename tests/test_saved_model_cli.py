"""Exports checked by TensorFlow's own SavedModel client, `saved_model_cli`.

`saved_model_cli show --all` must list the `serving_default` signature with its named input
and outputs and their dtypes, as TF Serving reads them; `saved_model_cli run` must return
what the Keras model predicts. An image model and a raw-string text model are covered.

The text model's graph holds tensorflow-text ops (`tfssl.text.TEXT_OPS`): the stock
`saved_model_cli run` cannot load it (the test checks that it names the missing op), and the
same client's `main` runs it once `tensorflow_text` is imported, as in any Python process
that serves such an export.
"""

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import tfssl

NUM_CLASSES = 10
TEXTS = ["很好，下次还来", "bad movie", "ＡＢＣ１２３！", "so so", ""]
CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
# TensorFlow's client, in a process that first registers the tensorflow-text ops.
CLI_WITH_TEXT_OPS = (
    "import sys\n"
    "import tensorflow_text\n"
    "from tensorflow.python.tools.saved_model_cli import main\n"
    "sys.argv[0] = 'saved_model_cli'\n"
    "sys.exit(main())\n"
)
# Exported and Keras predictions run the same float32 ops, fused or reordered differently by
# the graph optimizer: sums of ~100 terms of order 1 differ by a few float32 roundings each
# (eps 1.2e-7), about 1e-5 at most.
FLOAT32_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def cli(args, with_text_ops=False, check=True):
    command = [sys.executable, "-c", CLI_WITH_TEXT_OPS] if with_text_ops else [CLI]
    result = subprocess.run(
        command + args,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"saved_model_cli {args} failed:\n{result.stderr[-3000:]}")
    return result


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


def run_outputs(path, input_name, array, outdir, with_text_ops=False):
    os.makedirs(outdir)
    np.save(os.path.join(outdir, "input.npy"), array)
    cli(
        [
            "run",
            "--dir", path,
            "--tag_set", "serve",
            "--signature_def", "serving_default",
            "--inputs", f"{input_name}={os.path.join(outdir, 'input.npy')}",
            "--outdir", outdir,
        ],
        with_text_ops=with_text_ops,
    )
    names = ("logits", "probabilities", "classes")
    return {name: np.load(os.path.join(outdir, f"{name}.npy")) for name in names}


@pytest.fixture(scope="module")
def image_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    backbone = tfssl.backbones.conv_net((28, 28, 1), NUM_CLASSES, width=1 / 32)
    model = tfssl.models.MeanTeacher(backbone)
    x = np.random.default_rng(0).random((6, 28, 28, 1), dtype=np.float32)
    path = tfssl.export.export_saved_model(model, str(tmp_path_factory.mktemp("image")))
    return path, x, model.predict(x, verbose=0)


@pytest.fixture(scope="module")
def text_export(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = tfssl.models.PiModel(tfssl.backbones.fasttext(num_classes=2, num_buckets=1000))
    texts = np.array(TEXTS, dtype=object)
    path = tfssl.export.export_saved_model(model, str(tmp_path_factory.mktemp("text")))
    # saved_model_cli reads the batch with numpy: UTF-8 bytes become its tf.string input.
    encoded = np.array([text.encode("utf-8") for text in TEXTS])
    return path, encoded, model.predict(texts, verbose=0)


def test_show_lists_the_image_signature(image_export):
    path, _, _ = image_export
    show = cli(["show", "--all", "--dir", path]).stdout
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


def test_run_returns_the_image_model_predictions(image_export, tmp_path):
    path, x, expected = image_export
    outputs = run_outputs(path, "x", x, str(tmp_path / "out"))
    assert outputs["logits"].dtype == np.float32 and outputs["classes"].dtype == np.int64
    np.testing.assert_allclose(outputs["logits"], expected, **FLOAT32_TOLERANCE)
    softmax = np.exp(expected - expected.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(outputs["probabilities"], softmax, **FLOAT32_TOLERANCE)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(outputs["logits"], axis=1))


def test_show_lists_the_text_signature_and_its_tensorflow_text_ops(text_export):
    path, _, _ = text_export
    show = cli(["show", "--all", "--dir", path]).stdout
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


def test_stock_run_names_the_missing_tensorflow_text_op(text_export, tmp_path):
    path, texts, _ = text_export
    np.save(tmp_path / "input.npy", texts)
    result = cli(
        [
            "run",
            "--dir", path,
            "--tag_set", "serve",
            "--signature_def", "serving_default",
            "--inputs", f"text={tmp_path / 'input.npy'}",
            "--outdir", str(tmp_path / "out"),
        ],
        check=False,
    )
    assert result.returncode != 0
    missing = re.search(r"Op type not registered '(\w+)'", result.stderr).group(1)
    assert missing in tfssl.text.TEXT_OPS


def test_run_with_tensorflow_text_returns_the_text_model_predictions(text_export, tmp_path):
    path, texts, expected = text_export
    outputs = run_outputs(path, "text", texts, str(tmp_path / "out"), with_text_ops=True)
    assert outputs["logits"].shape == (len(TEXTS), 2)
    np.testing.assert_allclose(outputs["logits"], expected, **FLOAT32_TOLERANCE)
    np.testing.assert_array_equal(outputs["classes"], np.argmax(outputs["logits"], axis=1))
