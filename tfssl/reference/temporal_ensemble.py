"""The seed's TF1 Temporal Ensembling step, as `tf.compat.v1` graph code.

Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning", ICLR 2017, arXiv 1610.02242.
Source: seed 000, the blog post on Temporal Ensembling and Mean Teacher from the author's TF1
project. The oracle of `tfssl.models.TemporalEnsembling`.

What is the seed's text, kept with its variable names and ops:

- the `temporal_ensemble` block: `tf.get_variable('temporal_ensemble', shape=(sample_size,
  label_size), zeros, trainable=False)` in a `temporal_ensemble` variable scope,
  `Z = embedding_lookup(temporal_ensemble, features['idx'])`,
  `Z = alpha * Z + (1 - alpha) * preds`, `assign_op = scatter_update(temporal_ensemble,
  features['idx'], Z)`; `preds` are the network's logits (the seed's project averages
  logits);
- the weighting `ramp_up(epoch, max_epoch, method) * max_unsupervised_weight * labeled_size
  / sample_size`, with the seed's `ramp_up` (`tfssl.reference.seed_ops.ramp_up`).

What the blog post does not show, and is filled in here:

- `compute_loss`: the masked supervised cross-entropy, summed over the labeled rows
  (label `-1` = unlabeled) and divided by the *whole* batch size
  (`tf.compat.v1.losses.sparse_softmax_cross_entropy` with the labeled mask as weights and
  `SUM_OVER_BATCH_SIZE`), plus `weight * MSE(softmax(logits), softmax(target))`, the MSE a
  mean over batch and classes (`tf.compat.v1.losses.mean_squared_error`). This is what the
  issue describes; the seed's own `compute_loss` is not in the post.
- The training op: a `tf.compat.v1.train` optimizer's `minimize`, with the scatter update
  under `control_dependencies` on it, so the ensemble is written after the weights moved,
  with the logits of the step's forward pass (the same value the seed's `assign_op` writes).
- The startup-bias correction (the paper's `Z / (1 - alpha^t)`), which the seed lacks:
  `temporal_ensemble_counts`, a second non-trainable `(sample_size,)` variable, counts the
  updates of each sample; with `target="seed"` the target is the seed's updated `Z` divided
  by `1 - alpha^(t + 1)` (gradient flowing through it, as in the seed). `bias_correction=
  False` gives the seed's raw target.
- `target="paper"`: the previous epochs' ensemble `Z_prev / (1 - alpha^t)` under
  `tf.stop_gradient`; rows with `t = 0` target their own logits (zero consistency).
- The epoch is fed through a placeholder. The seed's `if cur_epoch == 0` is a Python test:
  on a graph tensor it is an identity comparison and always false, so the seed's zero at
  epoch 0 is applied here with a `tf.where` around its `ramp_up`. Like the seed, the epoch
  is not clamped at `ramp_up_epochs` (`tfssl` clamps it): compare within the ramp-up.

The graph lives in its own `tf.Graph` and `tf.compat.v1.Session`; eager execution stays on
for the rest of the process.
"""

import numpy as np
import tensorflow as tf

from tfssl.reference.seed_ops import ramp_up

__all__ = ["TemporalEnsembleGraph", "compute_loss", "dense_network_fn", "unsupervised_weight"]

tf1 = tf.compat.v1

_TARGETS = ("seed", "paper")
_PARAMS = (
    "sample_size",
    "label_size",
    "labeled_size",
    "max_unsupervised_weight",
    "ramp_up_epochs",
    "ramp_up_method",
)


def dense_network_fn(weights, activation=tf.nn.relu):
    """A TF1 dense network whose variables start from given numpy arrays.

    The inputs are flattened, then each `(kernel, bias)` pair is a layer `h @ kernel + bias`,
    with `activation` between layers and none after the last (logits). Pass the arrays of a
    Keras `Sequential` of `Dense` layers (`backbone.get_weights()`) to build the same network.

    Example:

    ```python
    network_fn = dense_network_fn(backbone.get_weights())
    ```

    Args:
        weights: Flat list `[kernel_0, bias_0, kernel_1, bias_1, ...]` of numpy arrays.
        activation: Activation between layers. Defaults to `tf.nn.relu`.

    Returns:
        A function `network_fn(x) -> logits` that creates `tf.compat.v1` variables
        `dense_<i>/kernel` and `dense_<i>/bias` in the current graph.

    Raises:
        ValueError: If `weights` is empty or of odd length.
    """
    weights = [np.asarray(w, np.float32) for w in weights]
    if not weights or len(weights) % 2:
        raise ValueError(
            f"`weights` must be [kernel, bias, ...] pairs. Received {len(weights)} arrays."
        )

    def network_fn(x):
        h = tf1.reshape(tf1.cast(x, tf1.float32), [tf1.shape(x)[0], -1])
        num_layers = len(weights) // 2
        for i in range(num_layers):
            with tf1.variable_scope(f"dense_{i}"):
                kernel = tf1.get_variable("kernel", initializer=weights[2 * i])
                bias = tf1.get_variable("bias", initializer=weights[2 * i + 1])
            h = tf1.matmul(h, kernel) + bias
            if i < num_layers - 1:
                h = activation(h)
        return h

    return network_fn


def unsupervised_weight(epoch, params):
    """The seed's weight `ramp_up(epoch) * max_unsupervised_weight * labeled / sample_size`.

    Args:
        epoch: Float32 scalar tensor (a placeholder).
        params: Dict with `ramp_up_epochs`, `ramp_up_method`, `max_unsupervised_weight`,
            `labeled_size` and `sample_size`.

    Returns:
        A float32 scalar tensor, 0 at epoch 0.
    """
    ramp = ramp_up(epoch, params["ramp_up_epochs"], params["ramp_up_method"])
    # The seed's `if cur_epoch == 0` never fires on a tensor (see the module docstring).
    ramp = tf1.where(tf1.equal(epoch, 0.0), 0.0, ramp)
    return ramp * (
        params["max_unsupervised_weight"] * params["labeled_size"] / params["sample_size"]
    )


def compute_loss(labels, logits, target, weight):
    """Masked supervised CE (mean over the whole batch) + `weight` x MSE on softmax outputs.

    Formula:

    ```python
    mask = labels != -1
    supervised = sum(where(mask, CE(labels, logits), 0)) / batch_size
    consistency = mean((softmax(logits) - softmax(target)) ** 2)   # over batch and classes
    loss = supervised + weight * consistency
    ```

    Args:
        labels: `(batch,)` int labels, `-1` for unlabeled rows.
        logits: `(batch, label_size)` logits of the training pass.
        target: `(batch, label_size)` target logits.
        weight: Scalar unsupervised weight.

    Returns:
        A dict of scalar tensors: `loss`, `supervised_loss`, `consistency_loss`,
        `unsupervised_weight`.
    """
    labeled = tf1.not_equal(labels, -1)
    safe_labels = tf1.where(labeled, labels, tf1.zeros_like(labels))
    supervised = tf1.losses.sparse_softmax_cross_entropy(
        safe_labels,
        logits,
        weights=tf1.cast(labeled, tf1.float32),
        reduction=tf1.losses.Reduction.SUM_OVER_BATCH_SIZE,
    )
    consistency = tf1.losses.mean_squared_error(
        tf1.nn.softmax(target),
        tf1.nn.softmax(logits),
        reduction=tf1.losses.Reduction.SUM_OVER_BATCH_SIZE,
    )
    return {
        "loss": supervised + weight * consistency,
        "supervised_loss": supervised,
        "consistency_loss": consistency,
        "unsupervised_weight": weight,
    }


class TemporalEnsembleGraph:
    """One training step of the seed's Temporal Ensembling, in a TF1 graph and session.

    Builds, in a fresh `tf.Graph`: placeholders `features = {"x", "idx"}`, `labels` and
    `epoch`; `preds = network_fn(features["x"])`; the seed's `temporal_ensemble` block with
    the startup-bias correction; `compute_loss`; `optimizer.minimize`; and the scatter
    updates of the ensemble and its counts under `control_dependencies` on the train op.
    `train_step` runs all of it once and returns the loss terms of the forward pass.

    Example:

    ```python
    graph = TemporalEnsembleGraph(
        dense_network_fn(backbone.get_weights()), input_shape=(4,),
        params={"sample_size": 24, "label_size": 3, "labeled_size": 8,
                "max_unsupervised_weight": 30.0, "ramp_up_epochs": 5,
                "ramp_up_method": "sigmoid"},
        optimizer=tf.compat.v1.train.GradientDescentOptimizer(0.5))
    terms = graph.train_step(x, idx, y, epoch=0)
    ensemble, counts = graph.ensemble()
    graph.close()
    ```

    Args:
        network_fn: `network_fn(x) -> logits`, building its `tf.compat.v1` variables in the
            current graph (e.g. `dense_network_fn`).
        input_shape: Shape of one input row, without the batch dimension.
        params: The seed's `self.params`: `sample_size`, `label_size`, `labeled_size`,
            `max_unsupervised_weight`, `ramp_up_epochs`, `ramp_up_method`.
        optimizer: A new `tf.compat.v1.train` optimizer (its slots go into this graph).
        alpha: Ensemble momentum. Defaults to `0.6`.
        target: `"seed"` or `"paper"` (see the module docstring). Defaults to `"seed"`.
        bias_correction: Divide the target by `1 - alpha^(t + 1)` (`"seed"` target only;
            the `"paper"` target is always corrected). Defaults to `True`.

    Raises:
        ValueError: For a missing `params` key, `alpha` outside `[0, 1)` or an unknown
            `target`.
    """

    def __init__(
        self,
        network_fn,
        input_shape,
        params,
        optimizer,
        alpha=0.6,
        target="seed",
        bias_correction=True,
    ):
        missing = [key for key in _PARAMS if key not in params]
        if missing:
            raise ValueError(f"`params` lacks {missing}. Received: params={params!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"`alpha` must be in [0, 1). Received: alpha={alpha}")
        if target not in _TARGETS:
            raise ValueError(f"`target` must be one of {_TARGETS}. Received: target={target!r}")
        self.params = dict(params)
        self.alpha = float(alpha)
        self.target = target
        self.bias_correction = bias_correction
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.features = {
                "x": tf1.placeholder(tf1.float32, (None, *input_shape), name="x"),
                "idx": tf1.placeholder(tf1.int64, (None,), name="idx"),
            }
            self.labels = tf1.placeholder(tf1.int32, (None,), name="labels")
            self.epoch = tf1.placeholder(tf1.float32, (), name="epoch")
            preds = network_fn(self.features["x"])
            consistency_target = self._temporal_ensemble(preds)
            self.terms = compute_loss(
                self.labels, preds, consistency_target, unsupervised_weight(self.epoch, params)
            )
            train_op = optimizer.minimize(self.terms["loss"], var_list=tf1.trainable_variables())
            # The seed's assign_op, ordered after the weight update.
            with tf1.control_dependencies([train_op]):
                self.assign_op = tf1.group(
                    tf1.scatter_update(self.temporal_ensemble, self.features["idx"], self.Z),
                    tf1.scatter_update(self.counts, self.features["idx"], self.t + 1.0),
                )
            self.trainable_variables = tf1.trainable_variables()
            self.session = tf1.Session(graph=self.graph)
            self.session.run(tf1.global_variables_initializer())

    def _temporal_ensemble(self, preds):
        """The seed's block plus the counts; returns the consistency target."""
        with tf1.variable_scope("temporal_ensemble"):
            self.temporal_ensemble = tf1.get_variable(
                initializer=tf1.zeros_initializer,
                shape=(self.params["sample_size"], self.params["label_size"]),
                dtype=tf1.float32,
                name="temporal_ensemble",
                trainable=False,
            )
            self.counts = tf1.get_variable(
                initializer=tf1.zeros_initializer,
                shape=(self.params["sample_size"],),
                dtype=tf1.float32,
                name="temporal_ensemble_counts",
                trainable=False,
            )
            self.Z = tf1.nn.embedding_lookup(self.temporal_ensemble, self.features["idx"])
            self.t = tf1.nn.embedding_lookup(self.counts, self.features["idx"])
            previous = self.Z
            self.Z = self.alpha * self.Z + (1 - self.alpha) * preds
        if self.target == "paper":
            corrected = tf1.div_no_nan(previous, 1.0 - self.alpha ** self.t[:, None])
            return tf1.stop_gradient(tf1.where(self.t > 0, corrected, preds))
        if not self.bias_correction:
            return self.Z
        return self.Z / (1.0 - self.alpha ** (self.t[:, None] + 1.0))

    def train_step(self, x, idx, labels, epoch):
        """Runs one step (forward, optimizer, ensemble update) on one batch.

        Args:
            x: Batch of inputs.
            idx: `(batch,)` sample indices.
            labels: `(batch,)` int labels, `-1` for unlabeled rows.
            epoch: The epoch number (0-based), fed to the weight's ramp-up.

        Returns:
            Dict of Python floats: `loss`, `supervised_loss`, `consistency_loss`,
            `unsupervised_weight`, from the step's forward pass.
        """
        feed = {
            self.features["x"]: x,
            self.features["idx"]: idx,
            self.labels: labels,
            self.epoch: float(epoch),
        }
        terms, _ = self.session.run([self.terms, self.assign_op], feed_dict=feed)
        return {name: float(value) for name, value in terms.items()}

    def ensemble(self):
        """Returns `(temporal_ensemble, counts)` as numpy arrays."""
        return tuple(self.session.run([self.temporal_ensemble, self.counts]))

    def weights(self):
        """Returns the trainable variables' values, in creation order."""
        return self.session.run(self.trainable_variables)

    def close(self):
        """Closes the session."""
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()
