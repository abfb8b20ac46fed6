"""Export a tfssl model's inference graph as a versioned SavedModel for TF Serving.

The seed author's TF1 project served its Temporal Ensembling model with a signature that
required the sample index `idx` as an input and shipped the whole per-sample ensemble
(27.6 MB) beside the network. Here only the served network goes out: the export tracks the
keras model returned by `model.serving_model(which)` (the backbone, or Mean Teacher's
teacher), never the tfssl wrapper, so the ensemble, a teacher that is not served and the
optimizer's slots stay in checkpoints, where a resumed run needs them.

The layout is the one TF Serving polls: `base_dir/<version>/saved_model.pb` plus
`variables/`, one integer-named folder per version (see
https://www.tensorflow.org/tfx/serving/serving_basic).
"""

import os
import shutil
import tempfile

import keras
import tensorflow as tf

__all__ = ["export_saved_model"]


def export_saved_model(model, base_dir, version=None, which="default"):
    """Write the inference graph of `model` to `base_dir/<version>/` for TF Serving.

    The served network is `model.serving_model(which)` for tfssl models (the backbone, or
    for Mean Teacher the teacher by default and the student with `which="student"`); a
    plain `keras.Model` is served as itself. Its single input becomes the named input `x`
    (numeric) or `text` (string), with the served network's dtype and shape and a batch
    dimension of `None`. The signature `serving_default` returns a dict of `logits`
    (float32), `probabilities` (softmax of the logits, float32) and `classes` (argmax,
    int64). Only the served network's variables are written.

    The SavedModel is written to a hidden temporary folder inside `base_dir` and then
    renamed to its version, so TF Serving, which watches `base_dir`, never loads a half
    written version.

    Example:

    ```python
    path = tfssl.export.export_saved_model(model, "saved_models/fashion_te")
    # -> "saved_models/fashion_te/1", then ".../2" on the next call.

    # In a process that needs only TensorFlow:
    serve = tf.saved_model.load(path).signatures["serving_default"]
    outputs = serve(x=tf.zeros([2, 28, 28, 1]))  # {"logits", "probabilities", "classes"}
    ```

    Serve every version of the folder with TF Serving's REST API on port 8501:

    ```shell
    docker run -p 8501:8501 \\
        -v "$PWD/saved_models/fashion_te:/models/fashion_te" \\
        -e MODEL_NAME=fashion_te tensorflow/serving
    ```

    Args:
        model: A tfssl model (anything with a `serving_model(which)` method returning a
            `keras.Model`) or a plain `keras.Model`. The served network must be built, with
            one input and one logits output (a Functional or Sequential model).
        base_dir: Folder holding one subfolder per version; created if missing. An
            existing folder must be empty or hold at least one version folder, so that a
            model is not written into a folder meant for something else.
        version: Integer version to write. Defaults to `None`: one more than the largest
            integer-named subfolder of `base_dir`, or 1 when there is none.
        which: Which network to serve, passed to `model.serving_model`. Defaults to
            `"default"`, the only value a plain `keras.Model` accepts.

    Returns:
        The path of the written version folder, `base_dir/<version>`, as a `str`.

    Raises:
        ValueError: If `which` is unknown, if `version` is not a non-negative integer,
            or if the served network does not have exactly one input and one output.
        TypeError: If `model.serving_model(which)` does not return a `keras.Model`.
        ValueError: If `base_dir` exists and is not a folder of versions: a file, or a
            folder holding entries but no integer-named folder (hidden entries aside).
        FileExistsError: If the version folder already exists.
    """
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int) or version < 0
    ):
        raise ValueError(f"`version` must be a non-negative integer. Received: version={version!r}")
    served = _served_model(model, which)
    spec = _input_spec(served)

    def serve(inputs):
        # Cast so the signature stays float32 under a mixed-precision policy.
        logits = tf.cast(served(inputs, training=False), tf.float32)
        return {
            "logits": logits,
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "classes": tf.argmax(logits, axis=-1, output_type=tf.int64),
        }

    archive = keras.export.ExportArchive()
    # The endpoint saves exactly the variables `serve` reads, so training state stays out.
    # `archive.track(served)` would write every weight a second time (as the keras.Variable
    # besides the tf.Variable the endpoint captures): track only the lookup tables of
    # StringLookup / TextVectorization layers, which the endpoint cannot find by itself.
    for trackable in tf.train.TrackableView(served).descendants():
        if isinstance(trackable, tf.saved_model.experimental.TrackableResource):
            archive.track(trackable)
    # The TensorSpec's name, not the Python argument's, becomes the signature's input key.
    archive.add_endpoint("serving_default", serve, input_signature=[spec])

    _check_base_dir(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    if version is None:
        version = _next_version(base_dir)
    path = os.path.join(base_dir, str(version))
    if os.path.exists(path):
        raise FileExistsError(
            f"Version {version} already exists in {base_dir!r}: {path!r}. Pass another "
            "`version`, or `version=None` for the next free one."
        )
    # TF Serving ignores folders whose names are not integers, so it cannot see this one.
    staging = tempfile.mkdtemp(prefix=f".export-{version}-", dir=base_dir)
    try:
        # A subfolder, because mkdtemp's own folder is private to the user (mode 0700) and
        # a TF Serving running as another user could not read it once renamed.
        written = os.path.join(staging, "saved_model")
        archive.write_out(written, verbose=False)
        os.rename(written, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _served_model(model, which):
    if hasattr(model, "serving_model"):
        served = model.serving_model(which)
    elif which == "default":
        served = model
    else:
        raise ValueError(
            f"A model without a `serving_model` method is served as itself, so `which` must "
            f"be 'default'. Received: which={which!r}"
        )
    if not isinstance(served, keras.Model):
        raise TypeError(
            f"`serving_model({which!r})` must return a keras.Model. Received: {served!r} of "
            f"type {type(served).__name__}"
        )
    return served


def _input_spec(served):
    try:
        inputs, outputs = served.inputs, served.outputs
    except (AttributeError, ValueError):
        inputs = outputs = None
    if not inputs:
        raise ValueError(
            f"Cannot read the input of the served model {served.name!r}: export needs a built "
            "Functional or Sequential model (one made from `keras.Input`)."
        )
    if len(inputs) != 1:
        raise ValueError(
            f"The served model {served.name!r} has {len(inputs)} inputs "
            f"({[t.name for t in inputs]}); export_saved_model serves models with one input."
        )
    if len(outputs) != 1:
        raise ValueError(
            f"The served model {served.name!r} has {len(outputs)} outputs; "
            "export_saved_model expects one output of logits."
        )
    dtype = tf.as_dtype(inputs[0].dtype)
    name = "text" if dtype == tf.string else "x"
    return tf.TensorSpec((None,) + tuple(inputs[0].shape[1:]), dtype, name=name)


def _check_base_dir(base_dir):
    """Refuses a `base_dir` that is a file, or a folder of other things than versions."""
    expected = (
        "Expected a folder of integer-named version folders (TF Serving's layout), an empty "
        "folder, or a path that does not exist yet."
    )
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise ValueError(f"`base_dir` is a file, not a folder. {expected} Received: {base_dir!r}")
    if not os.path.isdir(base_dir):
        return
    # Hidden entries (a staging folder left by an interrupted export, .DS_Store) are ignored,
    # as TF Serving ignores them.
    entries = sorted(entry for entry in os.listdir(base_dir) if not entry.startswith("."))
    if entries and not _versions(base_dir):
        shown = entries[:10] + (["..."] if len(entries) > 10 else [])
        raise ValueError(
            f"`base_dir` holds {len(entries)} entries and no version folder: {shown}. "
            f"{expected} Received: {base_dir!r}"
        )


def _versions(base_dir):
    return [
        int(entry.name) for entry in os.scandir(base_dir) if entry.is_dir() and entry.name.isdigit()
    ]


def _next_version(base_dir):
    return max(_versions(base_dir), default=0) + 1
