"""DivideMix.

Li, Socher & Hoi, "DivideMix: Learning with Noisy Labels as Semi-supervised Learning", ICLR
2020, arXiv 2002.07394; the authors' PyTorch code is LiJunnan1992/DivideMix
(`Train_cifar.py`). Every epoch a two-component Gaussian mixture on each network's
per-sample loss divides the labeled rows into clean and noisy ones; the other network then
trains with MixMatch, the clean rows labeled (their labels refined by its own guess) and the
noisy rows unlabeled (labels co-guessed by both networks). Built on tfssl's MixMatch pieces
(`tfssl.layers.mix_with_partners`, `tfssl.models.policies.Sharpen`) and on two networks
trained side by side as `MutualLearning`'s students are.
"""

import keras
import numpy as np
import tensorflow as tf

from tfssl import layers, schedules
from tfssl.data import UNLABELED
from tfssl.models import policies
from tfssl.models._pair import make_pair, pair_serving_model, split_pair_config
from tfssl.models._replicas import gather_from_replicas, global_mean
from tfssl.models._checks import resolve_num_classes
from tfssl.models.base import SemiSupervisedModel

__all__ = ["DivideMix", "gmm_clean_probability"]


def gmm_clean_probability(losses, steps=10, reg_covar=5e-4):
    """The posterior probability of the low-loss component of a 1-D two-component GMM.

    The losses are scaled to `[0, 1]` (min-max, as the authors' code), split in two at
    `0.5` to start, then `steps` EM iterations fit the mixture; the result is each value's
    responsibility of the component with the smaller mean. The updates are
    `sklearn.mixture.GaussianMixture`'s (which the authors call with `max_iter=10,
    reg_covar=5e-4, tol=1e-2`), so that fitting it with this start and `tol=0` gives the
    same posteriors.

    Formula:

    ```python
    l = (losses - min(losses)) / (max(losses) - min(losses))
    # E step: r[i, c] = pi[c] N(l[i]; mu[c], var[c]) / sum_c' pi[c'] N(l[i]; mu[c'], var[c'])
    # M step: n[c] = sum_i r[i, c];  pi[c] = n[c] / N;  mu[c] = sum_i r[i, c] l[i] / n[c]
    #         var[c] = sum_i r[i, c] (l[i] - mu[c])^2 / n[c] + reg_covar
    p_clean = r[:, argmin(mu)]
    ```

    Example:

    ```python
    p_clean = tfssl.models.divide_mix.gmm_clean_probability(per_sample_losses)
    clean = p_clean > 0.5
    ```

    Args:
        losses: 1-D array of per-sample losses.
        steps: EM iterations, `>= 1`. Defaults to `10`.
        reg_covar: Added to each variance, `> 0`. Defaults to `5e-4`.

    Returns:
        A float64 array like `losses`: the probability that each row is clean. All ones
        when the losses are all equal or fewer than two.

    Raises:
        ValueError: If `losses` is not 1-D and finite, or `steps` or `reg_covar` is out of
            range.
    """
    losses = np.asarray(losses, dtype=np.float64)
    if losses.ndim != 1 or not np.all(np.isfinite(losses)):
        raise ValueError(
            f"`losses` must be a finite 1-D array. Received: losses with shape {losses.shape}"
        )
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"`steps` must be an integer >= 1. Received: steps={steps!r}")
    if not isinstance(reg_covar, (int, float)) or reg_covar <= 0:
        raise ValueError(f"`reg_covar` must be > 0. Received: reg_covar={reg_covar!r}")
    spread = losses.max() - losses.min() if len(losses) else 0.0
    if len(losses) < 2 or spread == 0:
        return np.ones_like(losses)
    values = (losses - losses.min()) / spread
    responsibilities = np.stack([values <= 0.5, values > 0.5], axis=1).astype(np.float64)
    weights, means, variances = _m_step(values, responsibilities, reg_covar)
    for _ in range(steps):
        responsibilities = _e_step(values, weights, means, variances)
        weights, means, variances = _m_step(values, responsibilities, reg_covar)
    return _e_step(values, weights, means, variances)[:, np.argmin(means)]


def _m_step(values, responsibilities, reg_covar):
    """Weights, means and variances from the responsibilities (sklearn's update, with its
    `10 * eps` that keeps an empty component's count above 0)."""
    counts = responsibilities.sum(axis=0) + 10 * np.finfo(np.float64).eps
    means = responsibilities.T @ values / counts
    variances = (
        np.sum(responsibilities * (values[:, None] - means) ** 2, axis=0) / counts + reg_covar
    )
    return counts / len(values), means, variances


def _e_step(values, weights, means, variances):
    """The responsibilities `(N, 2)`, from log densities for stability."""
    log_density = -0.5 * (
        np.log(2 * np.pi * variances) + (values[:, None] - means) ** 2 / variances
    ) + np.log(weights)
    log_density -= log_density.max(axis=1, keepdims=True)
    density = np.exp(log_density)
    return density / density.sum(axis=1, keepdims=True)


class CoDivide(keras.callbacks.Callback):
    """Divides the training rows at the start of every epoch after the warm-up
    (`DivideMix.divide`). `DivideMix.fit` adds it with its training dataset."""

    def __init__(self, dataset):
        super().__init__()
        if not isinstance(dataset, tf.data.Dataset):
            raise ValueError(
                "DivideMix divides the training rows every epoch: fit it on a tf.data.Dataset "
                "of ({'x': x, 'idx': idx}, y) batches (tfssl.data.make_dataset). Received: "
                f"x of type {type(dataset).__name__}"
            )
        self.dataset = dataset

    def on_epoch_begin(self, epoch, logs=None):
        self.model.set_phase(epoch)
        if epoch >= self.model.warmup_epochs:
            self.model.divide(self.dataset)


@keras.saving.register_keras_serializable(package="tfssl")
class DivideMix(SemiSupervisedModel):
    """DivideMix: two networks divide each other's labeled rows into clean and noisy with a
    GMM on the loss, and train with MixMatch on the division.

    Training, per epoch `e` (the paper's Algorithm 1):

    1. Warm-up (`e < warmup_epochs`): each network minimises the cross-entropy of the
       labeled rows (`supervised_objective`).
    2. Co-divide (`divide`, run by a callback at the start of every later epoch): each
       network `n` scores every labeled row of the training dataset (inference mode); a
       two-component GMM on its min-max scaled cross-entropy (`gmm_clean_probability`)
       gives `w_n`, the probability that the row is clean, stored in the per-sample state
       `model.clean_probability[idx, n]`.
    3. MixMatch for network `k`, on the division of the other network `o`:
       - labeled rows with `w_o > clean_threshold` form `X`; the other labeled rows and
         every unlabeled row (`-1`) form `U`;
       - co-refinement: an `X` row's target is `sharpen(w_o * one_hot(y) + (1 - w_o) *
         p_k, T)`, `p_k` network `k`'s mean softmax over the `K` augmented views;
       - co-guessing: a `U` row's target is `sharpen(mean(p_k, p_o), T)`;
       - the `K` views of `X` and `U` with their targets are mixed with random partners,
         `lam = max(m, 1 - m)`, `m ~ Beta(alpha, alpha)` (one draw per batch);
       - `loss_k = CE(mixed X) + lambda_u(e) * MSE(mixed U) + sum(prior * log(prior /
         mean softmax))`, the last term (uniform prior) keeping the predictions spread
         over the classes.

    Both networks take their step in the same training step (the sum of their losses; each
    network's gradient is that of its own, the guesses being held fixed), where the
    authors alternate them over epochs. The guesses come from inference-mode passes
    (no dropout, batch-norm moving statistics); the authors guess with the trained network
    in training mode and its peer in inference mode. Under a `tf.distribute` strategy each
    replica mixes its own rows (as `MixMatch`); the means and the prior term are over the
    global batch. The authors concatenate the `X` rows before the `U` rows before mixing;
    here every view keeps the batch's row order (with each row marked `X` or `U`), which
    changes no distribution under the uniformly drawn permutation `index` and lets two
    replicas holding halves of a batch compute what one device does with fixed draws.
    `predict`, `evaluate` and the export serve `backbone`
    (`serving_model("peer")` the other network; the paper averages both).

    Formula:

    ```python
    w = clean_probability[idx, o]                     # from the other network's GMM
    X, U = labeled & (w > 0.5), ~(labeled & (w > 0.5))
    p_k = mean_v softmax(net_k(view_v(x)))            # no gradient, both networks
    t_X = sharpen(w * one_hot(y) + (1 - w) * p_k, T)
    t_U = sharpen((p_k + p_o) / 2, T)
    (x', t') = lam * W + (1 - lam) * W[index]         # W = views of the rows, targets
    q = softmax(net_k(x'))
    loss_k = mean_X(-sum(t' log q)) + lambda_u * mean_U(mean((t' - q)^2))
             + sum(1 / C * log((1 / C) / mean(q, rows)))
    ```

    Example:

    ```python
    model = tfssl.models.DivideMix(backbone, num_samples=len(x), warmup_epochs=10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    model.fit(tfssl.data.make_dataset(x, y_noisy, batch_size=100, shuffle=True), epochs=40)
    ```

    Args:
        backbone: `keras.Model` mapping inputs to logits, the first network (served).
        peer: The second network. Defaults to `None`: `backbone`'s architecture with newly
            initialised weights (`keras.models.clone_model`).
        num_samples: Number of training rows (the range of `idx`): the size of the
            per-sample division.
        num_classes: Number of classes. Defaults to the backbone's output size.
        warmup_epochs: Epochs of plain cross-entropy before the first division, `>= 0`.
            Defaults to `10` (the paper's for CIFAR-10).
        augment: A Keras layer applied with `training=True` to make each view. Defaults to
            `None`: `tfssl.layers.image_augmentation` for image inputs `(height, width,
            channels)`, the identity for other inputs.
        K: Augmented views per row, `>= 1`. Defaults to `2` (the paper's).
        T: Sharpening temperature, `> 0`. Defaults to `0.5`.
        alpha: Beta concentration of the mix, `> 0`. Defaults to `4.0` (the paper's).
        lambda_u: Weight of the `U` term, reached linearly over 16 epochs after the
            warm-up (the authors' `linear_rampup`); shorthand for `weight_schedule=
            LinearRampWeight(warmup_epochs, warmup_epochs + 16, lambda_u)`. Defaults to
            `None` (25.0, the paper's for 50% noise; a `weight_schedule` replaces it).
        clean_threshold: `w` above which a labeled row is clean, in `[0, 1)`. Defaults to
            `0.5`.
        gmm_steps: EM iterations of each division. Defaults to `10`.
        seed: Seed of the mixing draws. Defaults to `None`.
        **kwargs: `weight_schedule`, `supervised_objective` (of the warm-up),
            `supervised_normalize` of `SemiSupervisedModel`, and `keras.Model` arguments.

    Raises:
        ValueError: If an argument is out of range (the message names it), `num_samples`
            is missing, or `fit` is given something other than a `tf.data.Dataset`.

    References:
        Li, Socher & Hoi, DivideMix: Learning with Noisy Labels as Semi-supervised
        Learning, arXiv 2002.07394.
    """

    loss_terms = ("loss", "supervised_loss", "consistency_loss", "prior_loss")

    def __init__(self, backbone, peer=None, num_samples=None, num_classes=None,
                 warmup_epochs=10, augment=None, K=2, T=0.5, alpha=4.0, lambda_u=None,
                 clean_threshold=0.5, gmm_steps=10, seed=None, **kwargs):
        if isinstance(warmup_epochs, bool) or not isinstance(warmup_epochs, int) \
                or warmup_epochs < 0:
            raise ValueError(
                "`warmup_epochs` must be an integer >= 0. "
                f"Received: warmup_epochs={warmup_epochs!r}"
            )
        if isinstance(K, bool) or not isinstance(K, int) or K < 1:
            raise ValueError(f"`K` must be an integer >= 1. Received: K={K!r}")
        for name, value in (("alpha", alpha), ("lambda_u", lambda_u)):
            if value is not None and (isinstance(value, bool)
                                      or not isinstance(value, (int, float)) or value < 0
                                      or (name == "alpha" and value == 0)):
                raise ValueError(f"`{name}` must be a number > 0. Received: {name}={value!r}")
        if isinstance(clean_threshold, bool) or not isinstance(clean_threshold, (int, float)) \
                or not 0 <= clean_threshold < 1:
            raise ValueError(
                "`clean_threshold` must be a number in [0, 1). "
                f"Received: clean_threshold={clean_threshold!r}"
            )
        if isinstance(gmm_steps, bool) or not isinstance(gmm_steps, int) or gmm_steps < 1:
            raise ValueError(
                f"`gmm_steps` must be an integer >= 1. Received: gmm_steps={gmm_steps!r}"
            )
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                f"`backbone` must be a keras.Model mapping inputs to logits. "
                f"Received: backbone={backbone!r}"
            )
        if lambda_u is not None or kwargs.get("weight_schedule") is None:
            if kwargs.get("weight_schedule") is not None:
                raise ValueError(
                    "Pass either `lambda_u` or `weight_schedule`, not both. Received: "
                    f"lambda_u={lambda_u!r}, weight_schedule={kwargs['weight_schedule']!r}"
                )
            kwargs["weight_schedule"] = schedules.LinearRampWeight(
                warmup_epochs, warmup_epochs + 16, 25.0 if lambda_u is None else lambda_u
            )
        num_classes = resolve_num_classes(backbone, num_classes, sigmoid=False)
        pair, _ = make_pair(backbone, peer)
        super().__init__(pair, num_samples, num_classes, **kwargs)
        self.warmup_epochs = warmup_epochs
        self.augment = _default_augmentation(backbone, seed) if augment is None else augment
        self.K = K
        self.sharpen = self.add_hook(policies.Sharpen(T))
        self.alpha = float(alpha)
        self.clean_threshold = float(clean_threshold)
        self.gmm_steps = gmm_steps
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.clean_probability = self.add_sample_state(
            "clean_probability", (2,), initializer="ones"
        )
        self._division_losses = None
        # The phase the traced step trains in; `set_phase` switches it (and re-traces) at
        # the epoch the warm-up ends. A Python switch, not a `tf.cond`: the two phases'
        # losses all-reduce over replicas, which a cond branch cannot do under a strategy.
        self.warming_up = warmup_epochs > 0

    @property
    def networks(self):
        """The two networks, `[backbone, peer]`."""
        return self.backbone.networks

    @property
    def T(self):
        """The sharpening temperature."""
        return self.sharpen.temperature

    def set_phase(self, epoch):
        """Trains the next steps in the warm-up when `epoch < warmup_epochs`, else with
        MixMatch; the step is traced again when the phase changes (`CoDivide` calls this
        at every epoch of `fit`)."""
        warming_up = epoch < self.warmup_epochs
        if warming_up != self.warming_up:
            self.warming_up = warming_up
            self.make_train_function(force=True)

    # ------------------------------------------------------------------ co-divide
    def fit(self, *args, callbacks=None, **kwargs):
        """`keras.Model.fit`, with the `CoDivide` callback on the training dataset."""
        callbacks = list(callbacks or [])
        if not any(isinstance(callback, CoDivide) for callback in callbacks):
            callbacks.append(CoDivide(args[0] if args else kwargs.get("x")))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def division_losses(self, x, labels):
        """Each network's cross-entropy of the rows (inference mode): `(2, batch)`."""
        safe_labels = tf.maximum(tf.cast(labels, tf.int32), 0)
        return tf.stack(
            [
                keras.losses.sparse_categorical_crossentropy(
                    safe_labels, tf.cast(network(x, training=False), tf.float32),
                    from_logits=True,
                )
                for network in self.networks
            ]
        )

    def divide(self, dataset):
        """Co-divide: a GMM on each network's loss of every labeled row of `dataset`.

        Writes `clean_probability[idx, n]` for network `n` and every labeled row seen in
        one pass over `dataset`; other rows keep their values (1 at start).

        Args:
            dataset: Batches `({"x": x, "idx": idx}, y)`, e.g. the training dataset.

        Returns:
            `(idx, probabilities)`: the labeled rows' indices and their `(rows, 2)` clean
            probabilities.
        """
        if self._division_losses is None:
            self._division_losses = tf.function(self.division_losses, autograph=False)
        indices, losses = [], []
        for features, labels in dataset:
            labeled = np.reshape(labels.numpy(), [-1]) != UNLABELED
            if labeled.any():
                batch_losses = self._division_losses(features["x"], labels).numpy()
                indices.append(features["idx"].numpy()[labeled])
                losses.append(batch_losses[:, labeled])
        if not indices:
            return np.zeros([0], np.int64), np.ones([0, 2])
        indices, first = np.unique(np.concatenate(indices), return_index=True)
        losses = np.concatenate(losses, axis=1)[:, first]
        divided = np.stack(
            [gmm_clean_probability(loss, steps=self.gmm_steps) for loss in losses], axis=1
        )
        probabilities = self.clean_probability.numpy()
        probabilities[indices] = divided
        self.clean_probability.assign(probabilities)
        return indices, divided

    # ---------------------------------------------------------------------- step
    def compute_losses(self, x, sample_idx, labels):
        if sample_idx is None:
            raise ValueError("DivideMix trains on {'x': x, 'idx': idx} inputs.")
        views = [tf.cast(self.augment(x, training=True), tf.float32) for _ in range(self.K)]
        if self.warming_up:
            loss, supervised, consistency, prior, logits = self.warmup_losses(views[0], labels)
        else:
            loss, supervised, consistency, prior, logits = self.mixmatch_losses(
                views, sample_idx, labels
            )
        terms = {
            "loss": loss,
            "supervised_loss": supervised,
            "consistency_loss": consistency,
            "prior_loss": prior,
            "unsupervised_weight": self.unsupervised_weight(),
        }
        return terms, {"logits": logits}

    def warmup_losses(self, view, labels):
        """Warm-up: the sum of both networks' supervised terms; the five step values."""
        logits = [tf.cast(net(view, training=True), tf.float32) for net in self.networks]
        supervised = tf.add_n([self.supervised_loss(labels, z) for z in logits])
        return supervised, supervised, tf.constant(0.0), tf.constant(0.0), logits[0]

    def mixmatch_losses(self, views, sample_idx, labels):
        """After the warm-up: both networks' MixMatch on the other's division.

        Returns:
            `(loss, supervised, consistency, prior, logits)`: sums over the two networks
            (`consistency` unweighted), and network 0's inference logits of the first
            view, for the metrics.
        """
        num_rows = tf.shape(labels)[0]
        # (network, view * rows, classes) inference logits: the guesses, without gradient.
        guess_logits = [
            tf.stop_gradient(tf.cast(net(tf.concat(views, 0), training=False), tf.float32))
            for net in self.networks
        ]
        mean_probabilities = [
            tf.reduce_mean(tf.reshape(tf.nn.softmax(z), [self.K, num_rows, -1]), axis=0)
            for z in guess_logits
        ]
        co_guess = self.sharpen.transform((mean_probabilities[0] + mean_probabilities[1]) / 2)[0]
        division = self.gather_sample_state(self.clean_probability, sample_idx)
        labeled = labels != UNLABELED
        one_hot = tf.one_hot(tf.maximum(labels, 0), self.num_classes)
        weight = self.unsupervised_weight()
        totals = [tf.constant(0.0)] * 4
        for k, network in enumerate(self.networks):
            w = division[:, 1 - k][:, None]
            clean = labeled & (w[:, 0] > self.clean_threshold)
            refined = self.sharpen.transform(w * one_hot + (1 - w) * mean_probabilities[k])[0]
            targets = tf.where(clean[:, None], refined, co_guess)
            # Every view's rows in batch order, each row marked X (clean) or U. The
            # reference concatenates the X rows before the U rows; under a uniformly
            # drawn mixing permutation the order changes no distribution, and keeping
            # the batch order lets replicas holding halves of a batch mix as one device.
            inputs = tf.concat(views, 0)
            all_targets = tf.tile(targets, [self.K, 1])
            is_x = tf.tile(clean, [self.K])
            lam, index = self.draw_mixing(tf.shape(inputs)[0])
            mixed_inputs = layers.mix_with_partners(inputs, lam, index)
            mixed_targets = layers.mix_with_partners(all_targets, lam, index)
            logits = tf.cast(network(mixed_inputs, training=True), tf.float32)
            log_q = tf.nn.log_softmax(logits)
            q = tf.exp(log_q)
            supervised = global_mean(-tf.reduce_sum(mixed_targets * log_q, -1), weights=is_x)
            consistency = global_mean(
                tf.reduce_mean(tf.square(mixed_targets - q), -1), weights=~is_x
            )
            prior = self.prior_penalty(q)
            loss = supervised + weight * consistency + prior
            totals = [a + b for a, b in zip(totals, (loss, supervised, consistency, prior))]
        return (*totals, guess_logits[0][:num_rows])

    def prior_penalty(self, probabilities):
        """`sum(prior * log(prior / mean(probabilities)))`, uniform prior, over the global
        batch: this replica's share (`1 / replicas`; the all-gather passes the gradient
        back to each replica's rows, as the F1 objectives do)."""
        mean = tf.reduce_mean(gather_from_replicas(probabilities), axis=0)
        prior = 1.0 / self.num_classes
        penalty = tf.reduce_sum(prior * (tf.math.log(prior) - tf.math.log(mean)))
        context = tf.distribute.get_replica_context()
        replicas = 1 if context is None else context.num_replicas_in_sync
        return penalty / replicas

    def draw_mixing(self, num_rows):
        """One draw per batch: `(lam, index)`, `lam = max(m, 1 - m)`, `m ~ Beta(alpha,
        alpha)`, and a permutation of `num_rows` rows."""
        m = keras.random.beta((), self.alpha, self.alpha, seed=self.seed_generator)
        index = keras.random.shuffle(tf.range(num_rows), seed=self.seed_generator)
        return tf.maximum(m, 1.0 - m), index

    def serving_model(self, which="default"):
        """The backbone for `"default"` and `"backbone"`, the other network for `"peer"`."""
        return pair_serving_model(self.networks, which)

    def get_config(self):
        config = split_pair_config(super().get_config())
        config.update(
            {
                "warmup_epochs": self.warmup_epochs,
                "augment": keras.saving.serialize_keras_object(self.augment),
                "K": self.K,
                "T": self.T,
                "alpha": self.alpha,
                "clean_threshold": self.clean_threshold,
                "gmm_steps": self.gmm_steps,
                "seed": self.seed,
            }
        )
        return config


def _default_augmentation(backbone, seed):
    """The papers' image augmentation for image inputs, the identity for others."""
    shape = tuple(backbone.inputs[0].shape[1:]) if getattr(backbone, "inputs", None) else ()
    if len(shape) == 3:
        return layers.image_augmentation(shape, seed=seed)
    return keras.layers.Identity()
