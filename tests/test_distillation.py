"""Distiller and MutualLearning against their formulas, Keras' own distillation loss, their
configs, serving any student and a Fashion-MNIST subset. The shared contract, fresh-process
serving and two replicas of both models are tests/test_contract.py's."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import _oracles as oracles
from tfssl import backbones, data, datasets, export, losses, models, testing


def _scaling_model(scale, num_classes=2, dropout=0.0):
    """Logits = scale * x: a model whose outputs are known by hand."""
    model = keras.Sequential(
        [
            keras.Input((num_classes,), name="x"),
            keras.layers.Dropout(dropout),
            keras.layers.Dense(num_classes, use_bias=False),
        ]
    )
    model.layers[-1].kernel.assign(scale * np.eye(num_classes, dtype="float32"))
    return model


@pytest.mark.parametrize("normalize", ["batch", "labeled"])
def test_distiller_loss_equals_the_hand_checked_formula(normalize):
    temperature, alpha = 2.0, 0.25
    # Student logits (0, 0); teacher logits (2 ln 3, 0), i.e. (ln 3, 0) at T = 2: the
    # teacher's softened distribution is (3/4, 1/4), the student's (1/2, 1/2).
    x = np.array([[0.0, 0.0], [np.log(3.0), 0.0]], "float32")
    student = _scaling_model(0.0)
    # The teacher has dropout: equal values prove it runs in inference mode.
    teacher = _scaling_model(2.0, dropout=0.9)
    model = models.Distiller(
        student, teacher, temperature=temperature, alpha=alpha, supervised_normalize=normalize
    )
    labels = tf.constant([1, data.UNLABELED])
    terms, _ = model.compute_losses(x, None, labels)
    # Row 0: teacher (0, 0) matches the student, KL 0; row 1 as above, times T^2 = 4.
    kl_row_1 = 0.75 * np.log(0.75 / 0.5) + 0.25 * np.log(0.25 / 0.5)
    soft = (0.0 + 4.0 * kl_row_1) / 2
    supervised = np.log(2.0) / (2 if normalize == "batch" else 1)  # only row 0 is labeled
    np.testing.assert_allclose(terms["distillation_loss"], soft, rtol=1e-6)
    np.testing.assert_allclose(terms["supervised_loss"], supervised, rtol=1e-6)
    np.testing.assert_allclose(
        terms["loss"], alpha * supervised + (1 - alpha) * soft, rtol=1e-6
    )


def test_distiller_soft_term_equals_keras_with_its_kl_instance_not_its_default():
    rng = np.random.default_rng(0)
    teacher_logits = rng.normal(size=(5, 4)).astype("float32") * 3
    student_logits = rng.normal(size=(5, 4)).astype("float32")
    ours = losses.distillation_loss(teacher_logits, student_logits, temperature=3.0)
    fixed = keras.distillation.LogitsDistillation(3.0, loss=keras.losses.KLDivergence())
    np.testing.assert_allclose(
        ours, fixed.compute_loss(teacher_logits, student_logits), rtol=1e-4
    )
    # Measured on Keras 3.15.1 (the reason the docstring gives): the default string loss
    # is applied to the scaled logits, without softmax and T^2.
    default = keras.distillation.LogitsDistillation(3.0)
    assert abs(float(default.compute_loss(teacher_logits, student_logits)) - float(ours)) > 0.1


def test_distiller_leaves_the_teacher_unchanged():
    keras.utils.set_random_seed(0)
    x, _, y_semi = testing.tiny_data()
    teacher = testing.tiny_backbone(dropout=0.3)
    model = models.Distiller(testing.tiny_backbone(), teacher, temperature=4.0, alpha=0.5)
    before = [w.numpy().copy() for w in teacher.weights]
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(data.make_dataset(x, y_semi, 16, shuffle=True), epochs=2, verbose=0)
    assert not teacher.trainable and len(before) == 4
    for old, new in zip(before, teacher.weights):
        np.testing.assert_array_equal(old, new.numpy())


def test_distiller_gradient_equals_numpy_and_reaches_only_the_student():
    temperature, alpha = 3.0, 0.25
    x, labels = oracles.batch()
    student, teacher = oracles.linear_backbone(), oracles.linear_backbone(weight_seed=5)
    model = models.Distiller(student, teacher, temperature=temperature, alpha=alpha)
    with tf.GradientTape() as tape:
        terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    kernel, bias = oracles.dense_weights()
    teacher_kernel, teacher_bias = oracles.dense_weights(seed=5)
    student_logits = x @ kernel + bias
    teacher_logits = x @ teacher_kernel + teacher_bias
    soft_student, soft_teacher = student_logits / temperature, teacher_logits / temperature
    soft = temperature**2 * oracles.consistency(soft_student, soft_teacher, "kl").mean()
    supervised, supervised_grad = oracles.cross_entropy(labels, student_logits)
    np.testing.assert_allclose(terms["distillation_loss"], soft, rtol=oracles.RTOL)
    np.testing.assert_allclose(
        terms["loss"], alpha * supervised + (1 - alpha) * soft, rtol=oracles.RTOL
    )
    # d/dz of T^2 KL(q_T || p_T) at z / T is T (p_T - q_T) / batch: the student's side only.
    soft_grad = temperature * oracles.consistency_gradients(soft_student, soft_teacher, "kl")[0]
    expected = oracles.dense_gradients(x, alpha * supervised_grad + (1 - alpha) * soft_grad)
    gradients = tape.gradient(terms["loss"], student.trainable_weights + teacher.weights)
    for gradient, value in zip(gradients[:2], expected):
        np.testing.assert_allclose(gradient, value, rtol=oracles.RTOL, atol=oracles.ATOL)
    assert all(g is None for g in gradients[2:])


def _cohort(num_students=2, temperature=1.0):
    keras.utils.set_random_seed(0)
    students = [testing.tiny_backbone(seed=i) for i in range(num_students)]
    return models.MutualLearning(students, temperature=temperature)


@pytest.mark.parametrize("num_students, temperature", [(2, 1.0), (3, 2.0)])
def test_mutual_learning_each_student_receives_the_others_kl(num_students, temperature):
    model = _cohort(num_students, temperature)
    x, _, y_semi = testing.tiny_data()
    labels = tf.constant(y_semi, tf.int32)
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(x, None, labels)
        logits = [student(x) for student in model.students]
    for k, student in enumerate(model.students):
        # Student k's own term, by hand: the others' predictions are fixed targets.
        with tf.GradientTape() as own_tape:
            own_logits = student(x)
            own = tf.add_n(
                [
                    losses.distillation_loss(tf.stop_gradient(logits[l]), own_logits, temperature)
                    for l in range(num_students)
                    if l != k
                ]
            ) / (num_students - 1)
        expected = own_tape.gradient(own, student.trainable_weights)
        received = tape.gradient(terms["mutual_loss"], student.trainable_weights)
        for e, r in zip(expected, received):
            assert float(tf.reduce_sum(tf.abs(r))) > 0
            # Equal only if no other student's term sends gradient into student k.
            np.testing.assert_allclose(r, e, rtol=1e-4, atol=1e-7)
    # The terms by NumPy: each student's mean T^2 KL from each other student, and the sum
    # of the students' cross-entropies.
    z = [np.asarray(student_logits, np.float64) for student_logits in logits]
    mutual = sum(
        temperature**2 * oracles.consistency(z[k] / temperature, z[l] / temperature, "kl").mean()
        for k in range(num_students)
        for l in range(num_students)
        if l != k
    ) / (num_students - 1)
    np.testing.assert_allclose(terms["mutual_loss"], mutual, rtol=oracles.RTOL)
    supervised = sum(oracles.cross_entropy(y_semi, logits_k)[0] for logits_k in z)
    np.testing.assert_allclose(terms["supervised_loss"], supervised, rtol=oracles.RTOL)


@pytest.mark.parametrize("num_students, temperature", [(2, 1.0), (3, 2.0)])
def test_mutual_learning_gradient_equals_numpy_on_linear_students(num_students, temperature):
    x, labels = oracles.batch()
    students = [oracles.linear_backbone(weight_seed=k) for k in range(num_students)]
    model = models.MutualLearning(students, temperature=temperature)
    with tf.GradientTape(persistent=True) as tape:
        terms, _ = model.compute_losses(tf.constant(x), None, tf.constant(labels))
    logits = [x @ kernel + bias for kernel, bias in map(oracles.dense_weights, range(num_students))]
    for k, student in enumerate(students):
        # Student k's gradient: from its own term only, T (p_k - q_l) / batch per other l
        # at temperature T (the others' predictions are fixed targets), and its CE.
        grad_logits = oracles.cross_entropy(labels, logits[k])[1]
        for l in range(num_students):
            if l != k:
                grad_logits = grad_logits + temperature * oracles.consistency_gradients(
                    logits[k] / temperature, logits[l] / temperature, "kl"
                )[0] / (num_students - 1)
        expected = oracles.dense_gradients(x, grad_logits)
        gradients = tape.gradient(terms["loss"], student.trainable_weights)
        for gradient, value in zip(gradients, expected):
            np.testing.assert_allclose(gradient, value, rtol=oracles.RTOL, atol=oracles.ATOL)


@pytest.mark.slow  # an export of each student
def test_mutual_learning_serves_any_student(tmp_path):
    model = _cohort(3)
    x, _, y_semi = testing.tiny_data()
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    model.fit(data.make_dataset(x, y_semi, 16), epochs=1, verbose=0)
    logits = [student(x, training=False).numpy() for student in model.students]
    np.testing.assert_allclose(model.predict(x, verbose=0), logits[0], atol=1e-6)
    np.testing.assert_allclose(
        model.serving_model("ensemble")(x, training=False), np.mean(logits, axis=0), atol=1e-5
    )
    # Loaded in this process: that an export serves in a fresh process that imports only
    # TensorFlow is checked for both models in tests/test_contract.py.
    runs = []
    for which in (1, 2):
        path = export.export_saved_model(model, str(tmp_path / f"s{which}"), which=which)
        runs.append((path, logits[which]))
    distiller = models.Distiller(testing.tiny_backbone(), testing.tiny_backbone(seed=5))
    path = export.export_saved_model(distiller, str(tmp_path / "distiller"))
    runs.append((path, distiller.student(x, training=False).numpy()))
    served = [
        tf.saved_model.load(p).signatures["serving_default"](x=tf.constant(x)) for p, _ in runs
    ]
    for (_, expected), outputs in zip(runs, served):
        np.testing.assert_allclose(outputs["logits"], expected, atol=1e-5)
    assert np.max(np.abs(served[0]["logits"] - served[1]["logits"])) > 1e-3
    with pytest.raises(ValueError, match="which=3"):
        model.serving_model(3)


@pytest.mark.parametrize(
    "make_model",
    [
        lambda: models.Distiller(testing.tiny_backbone(), testing.tiny_backbone(seed=7)),
        lambda: models.MutualLearning([testing.tiny_backbone(), testing.tiny_backbone(seed=3)]),
    ],
    ids=["distiller", "mutual_learning"],
)
def test_config_names_the_students_as_the_constructor_does(make_model):
    # The contract itself (fit, config and .keras round trips, resumed training, export) runs
    # on both models in tests/test_contract.py.
    model = make_model()
    config = model.get_config()
    assert "backbone" not in config
    assert type(model).from_config(config).get_config() == config


def _fashion_subset(num_rows=1000, num_labeled=100):
    (x, y), _ = datasets.load_fashion_mnist()
    x = (x[:num_rows, ..., None] / 255.0).astype("float32")
    y_semi = data.mask_labels(y[:num_rows], num_labeled, seed=0)
    return x, y_semi


def _small_mlp(name, seed):
    return backbones.mlp((28, 28, 1), 10, units=(64,), seed=seed, name=name)


def _fashion_teacher(x, y_semi):
    labeled = y_semi != data.UNLABELED
    teacher = _small_mlp("teacher", 0)
    teacher.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    teacher.fit(x[labeled], y_semi[labeled], batch_size=50, epochs=5, verbose=0)
    return teacher


def _fit_fashion(model, x, y_semi):
    model.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
    dataset = data.make_dataset(x, y_semi, 100, shuffle=True, seed=0, labeled_per_batch=20)
    # 2 epochs: the terms trained on end at about 0.55 (distillation) and 0.4 (mutual) of
    # the supervised runs' (0.8 asked); untrained, they would stay near 1.
    return model.fit(dataset, epochs=2, verbose=0).history


def _mutual_loss(students, x):
    cohort = models.MutualLearning(students)
    return float(tf.add_n(cohort.mutual_terms([s(x, training=False) for s in students])))


@pytest.mark.slow
def test_the_unlabeled_terms_move_the_students_on_fashion_mnist():
    keras.utils.set_random_seed(0)
    x, y_semi = _fashion_subset()
    teacher = _fashion_teacher(x, y_semi)
    unlabeled = x[y_semi == data.UNLABELED]
    histories, students = {}, {}
    # alpha = 1 trains on the supervised term alone and only measures the distillation term;
    # every run starts from the same weights and sees the same batches.
    for alpha in (0.1, 1.0):
        keras.utils.set_random_seed(1)
        model = models.Distiller(
            _small_mlp("student", 1), teacher, alpha=alpha, supervised_normalize="labeled"
        )
        histories[alpha] = _fit_fashion(model, x, y_semi)
    assert histories[0.1]["distillation_loss"][-1] < 0.8 * histories[1.0]["distillation_loss"][-1]
    # Mutual learning against the same two students trained on their labels alone (a
    # Distiller with alpha = 1): the mutual term brings their predictions on the unlabeled
    # rows together.
    for name in ("mutual", "alone"):
        keras.utils.set_random_seed(2)
        pair = [_small_mlp("a", 2), _small_mlp("b", 3)]
        if name == "mutual":
            _fit_fashion(models.MutualLearning(pair, supervised_normalize="labeled"), x, y_semi)
        else:
            for student in pair:
                alone = models.Distiller(
                    student, teacher, alpha=1.0, supervised_normalize="labeled"
                )
                _fit_fashion(alone, x, y_semi)
        students[name] = pair
    mutual, alone = (_mutual_loss(students[name], unlabeled) for name in ("mutual", "alone"))
    assert mutual < 0.8 * alone


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda s, t: models.Distiller(s, t, temperature=0.0), "temperature=0.0"),
        (lambda s, t: models.Distiller(s, t, temperature=-1), "temperature=-1"),
        (lambda s, t: models.Distiller(s, t, alpha=-0.1), "alpha=-0.1"),
        (lambda s, t: models.Distiller(s, t, alpha=1.5), "alpha=1.5"),
        (
            lambda s, t: models.Distiller(s, testing.tiny_backbone(num_classes=4)),
            r"output shape \(None, 3\), teacher output shape \(None, 4\)",
        ),
        (lambda s, t: models.Distiller(s, "teacher"), "teacher='teacher'"),
        (lambda s, t: models.MutualLearning([s]), "Received: 1 model"),
        (lambda s, t: models.MutualLearning(s), "Received: 1 model"),
        (
            lambda s, t: models.MutualLearning([s, testing.tiny_backbone(num_classes=4)]),
            r"\(None, 3\).*\(None, 4\)",
        ),
        (lambda s, t: models.MutualLearning([s, t], temperature=0), "temperature=0"),
    ],
)
def test_bad_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make(testing.tiny_backbone(), testing.tiny_backbone(seed=1))


MLP = ("--backbone", "mlp")  # ~10x cheaper than the conv_net on a CPU
