"""The papers' settings (`--preset`), their published numbers and the papers to cite.

Not run by the default benchmark: they need a GPU and CIFAR-10 / SVHN (`--data-dir`);
`--preset NAME --dry-run` prints the configuration one would run. `PRESETS` are the
consistency papers' (`estimators/benchmark.py --preset`), `FIXMATCH_PRESETS` and
`MIXMATCH_PRESETS` those of `estimators/fixmatch.py` and `estimators/mixmatch.py`.
"""

import json

import keras
import numpy as np

from benchmarking.methods import METHODS
from benchmarking.protocols import Protocol
from benchmarking.training import fit_and_evaluate
from tfssl import backbones, data, datasets, layers, schedules

__all__ = ["FIXMATCH_PRESETS", "MIXMATCH_PRESETS", "PAPERS", "PRESETS", "PUBLISHED_ROWS",
           "run_fixmatch_preset", "run_preset"]

# Cited by the report's short names ("TE paper", ...).
PAPERS = {
    "TE paper": "Samuli Laine, Timo Aila. Temporal Ensembling for Semi-Supervised Learning. "
    "ICLR 2017. arXiv:1610.02242",
    "MT paper": "Antti Tarvainen, Harri Valpola. Mean teachers are better role models: "
    "Weight-averaged consistency targets improve semi-supervised deep learning results. "
    "NeurIPS 2017. arXiv:1703.01780",
    "Oliver et al. 2018": "Avital Oliver, Augustus Odena, Colin Raffel, Ekin D. Cubuk, Ian J. "
    "Goodfellow. Realistic Evaluation of Deep Semi-Supervised Learning Algorithms. NeurIPS "
    "2018. arXiv:1804.09170",
    "Xiao et al. 2017": "Han Xiao, Kashif Rasul, Roland Vollgraf. Fashion-MNIST: a Novel "
    "Image Dataset for Benchmarking Machine Learning Algorithms. 2017. arXiv:1708.07747",
}

_PAPER = {
    "epochs": 300,
    "batch_size": 100,
    "learning_rate": 0.003,
    "ramp_up_epochs": 80,
    "rampdown_epochs": 50,
    "final_beta_1": 0.5,
    "alpha": 0.6,
    "width": 1.0,
    "noise_stddev": 0.15,
    "max_translation": 2,
    "max_unsupervised_weight": {"pi_model": 100.0, "temporal_ensembling": 30.0,
                                "mean_teacher": 100.0},
    "rampup_ema_decay": 0.99,
    "ema_decay": 0.999,
}
PRESETS = {
    "cifar10-4000": dict(
        _PAPER, dataset="cifar10", num_labeled=4000, horizontal_flip=True,
        published="TE paper, Table 2: supervised 35.56, Π 12.36, TE 12.16 % error; MT paper: "
        "MT 12.31 % error",
    ),
    "svhn-1000": dict(
        _PAPER, dataset="svhn", num_labeled=1000, horizontal_flip=False,
        published="TE paper: Π 4.82, TE 4.42 % error; MT paper: MT 3.95 % error",
    ),
    "svhn-500": dict(
        _PAPER, dataset="svhn", num_labeled=500, horizontal_flip=False,
        published="TE paper: Π 6.65, TE 5.12 % error",
    ),
}

# Test error (%): setting, supervised, Π, TE, MT, source, preset.
PUBLISHED_ROWS = [
    ("CIFAR-10, 4000 labels", "35.56", "12.36", "12.16", "–",
     "TE paper, Table 2, with augmentation", "`cifar10-4000`"),
    ("SVHN, 500 labels", "–", "6.65", "5.12", "–", "TE paper", "`svhn-500`"),
    ("SVHN, 1000 labels", "–", "4.82", "4.42", "–", "TE paper", "`svhn-1000`"),
    ("CIFAR-10, 4000 labels", "20.66", "13.20", "–", "12.31", "MT paper, ConvNet",
     "`cifar10-4000`"),
    ("SVHN, 250 / 1000 labels", "–", "–", "–", "4.35 / 3.95", "MT paper",
     "`svhn-1000` (1000)"),
    ("CIFAR-10, 4000 labels", "20.26", "16.37", "–", "15.87",
     "Oliver et al. 2018 (WRN-28-2, one shared TF1 codebase)", "–"),
    ("SVHN, 1000 labels", "12.83", "7.19", "–", "5.65", "Oliver et al. 2018", "–"),
]


def run_preset(name, data_dir, seed=0, dry_run=False):
    """Runs (or, with `dry_run`, prints) a paper setting; returns the configuration.

    Args:
        name: A key of `PRESETS`.
        data_dir: Folder of the dataset (`tfssl.datasets.load_cifar10` / `load_svhn`).
        seed: Seed of the labels, shuffles and weights.
        dry_run: Only print the configuration.

    Returns:
        The preset's configuration dict, with `"accuracy"` per method when it ran.

    Raises:
        ValueError: If `name` is unknown, or `data_dir` is missing for a real run.
    """
    if name not in PRESETS:
        raise ValueError(f"Unknown preset. Choose one of {sorted(PRESETS)}. Received: {name!r}")
    cfg = dict(PRESETS[name], preset=name, seed=seed)
    print(json.dumps(cfg, indent=2, ensure_ascii=False))
    if dry_run:
        return cfg
    if not data_dir:
        raise ValueError(f"--preset needs --data-dir. Received: data_dir={data_dir!r}")
    loader = datasets.load_cifar10 if cfg["dataset"] == "cifar10" else datasets.load_svhn
    (x, y), (x_test, y_test) = loader(data_dir)
    rows = {"x": (x / 255.0).astype(np.float32), "y": y,
            "y_semi": data.mask_labels(y, cfg["num_labeled"], seed=seed),
            "x_test": (x_test / 255.0).astype(np.float32), "y_test": y_test}
    # The papers' batches draw all rows alike, the cross-entropy divided by the batch.
    protocol = Protocol(
        name, name, train_size=len(x), num_labeled=cfg["num_labeled"], backbone=name,
        epochs=cfg["epochs"], batch_size=cfg["batch_size"], labeled_per_batch=None,
        learning_rate=cfg["learning_rate"], supervised_normalize="batch", steps_per_execution=1,
    )

    def build_backbone():
        return backbones.conv_net(
            x.shape[1:], 10, width=cfg["width"], horizontal_flip=cfg["horizontal_flip"],
            noise_stddev=cfg["noise_stddev"], max_translation=cfg["max_translation"],
        )

    cfg["accuracy"] = {}
    for method_name in ("supervised", "pi_model", "temporal_ensembling", "mean_teacher"):
        method = METHODS[method_name]
        hyper = dict(method.hyper)
        if method_name in cfg["max_unsupervised_weight"]:
            # The seed's and papers' factor labeled / total rows, folded into w_max.
            hyper.update(
                max_unsupervised_weight=cfg["max_unsupervised_weight"][method_name]
                * cfg["num_labeled"] / len(x),
                ramp_up_epochs=cfg["ramp_up_epochs"], alpha=cfg["alpha"], target="paper",
                ema_decay=cfg["ema_decay"], rampup_ema_decay=cfg["rampup_ema_decay"],
            )
        ramp = schedules.RampUpDown(
            cfg["learning_rate"], num_epochs=cfg["epochs"], rampup_epochs=cfg["ramp_up_epochs"],
            rampdown_epochs=cfg["rampdown_epochs"], final_beta_1=cfg["final_beta_1"],
        )
        result = fit_and_evaluate(method, hyper, protocol, rows, seed,
                                  build_backbone, callbacks=[ramp])
        cfg["accuracy"][method_name] = result["accuracy"]
        print(f"{name} {method_name}: test error {100 * (1 - result['accuracy']):.2f}% "
              f"(published: {cfg['published']})", flush=True)
    return cfg


# FixMatch's CIFAR-10 settings (Sohn et al., arXiv 2001.07685, section 4 and appendix B.1):
# 4.26 / 5.07 / 11.39 % error with 4000 / 250 / 40 labels (RandAugment, table 2).
_FIXMATCH_PAPER = dict(
    backbone="WRN-28-2 (run here with tfssl.backbones.conv_net)",
    steps=2**20,
    batch_size=64,
    mu=7,
    threshold=0.95,
    lambda_u=1.0,
    optimizer="SGD, Nesterov momentum 0.9, weight decay 5e-4",
    learning_rate=0.03,
    learning_rate_schedule="0.03 cos(7 pi k / 16 K)",
    ema_decay=0.999,
    weak="flip + translation up to 12.5% (4 px)",
    strong="RandAugment (2 ops, random magnitude) + cutout",
)
FIXMATCH_PRESETS = {
    "cifar10-4000": dict(_FIXMATCH_PAPER, num_labeled=4000, published_error=4.26),
    "cifar10-250": dict(_FIXMATCH_PAPER, num_labeled=250, published_error=5.07),
    "cifar10-40": dict(_FIXMATCH_PAPER, num_labeled=40, published_error=11.39),
}

# MixMatch's CIFAR-10 setting (Berthelot et al. 2019, arXiv 1905.02249, section 4.1, and the
# authors' code, mixmatch.py and runs/table*.sh): the flags of `estimators/mixmatch.py` it
# sets, and what no flag sets.
MIXMATCH_PRESETS = {
    "cifar10-4000": {
        "flags": {
            "num_labeled": 4000,
            "batch_size": 128,
            "labeled_per_batch": 64,
            "learning_rate": 0.002,
            "K": 2,
            "T": 0.5,
            "alpha": 0.75,
            "lambda_u": 75.0,
            "ramp_up_epochs": 23,
            "weight_decay": 0.02,
        },
        "not flags": {
            "dataset": "CIFAR-10 (50,000 training images), 4000 labels",
            "backbone": "WRN-28-2 (1.5M parameters)",
            "augmentation": "random horizontal flip and crop (translation by 4 pixels)",
            "ramp-up": "linear over 16,384 steps (1024 kimg): 23 passes over the 46,000 "
            "unlabeled rows at 64 a step",
            "training": "1,048,576 steps (2^20) of 64 labeled + 64 unlabeled rows",
            "evaluation": "EMA of the weights, decay 0.999 (keras.optimizers.AdamW use_ema)",
            "weight decay": "0.02 x learning rate per step, kernels only (AdamW's)",
            "published": "6.24 +- 0.06 % test error (Table 1 of arXiv 1905.02249)",
        },
    }
}


def run_fixmatch_preset(name, data_dir, seed=0, dry_run=False, verbose=2):
    """Prints FixMatch's paper setting `name` as JSON and, unless `dry_run`, trains it on
    CIFAR-10 (`data_dir`: the binary release) and returns `(model, (x_test, y_test))`.

    Raises:
        ValueError: If the run needs `data_dir` and it is not given.
    """
    cfg = dict(FIXMATCH_PRESETS[name], preset=name, seed=seed)
    print(json.dumps(cfg, indent=2))
    if dry_run:
        return None
    if not data_dir:
        raise ValueError(f"--preset needs --data-dir (CIFAR-10). Received: {data_dir!r}")
    keras.utils.set_random_seed(seed)
    (x, y), (x_test, y_test) = datasets.load_cifar10(data_dir)
    x, x_test = (x / 255.0).astype("float32"), (x_test / 255.0).astype("float32")
    y_semi = data.mask_labels(y, cfg["num_labeled"], seed=seed)
    batch = cfg["batch_size"] * (cfg["mu"] + 1)
    train = data.make_dataset(
        x, y_semi, batch, shuffle=True, seed=seed, labeled_per_batch=cfg["batch_size"]
    )
    steps_per_epoch = int(train.cardinality())
    model = METHODS["fixmatch"].model(
        backbones.conv_net((32, 32, 3), 10, augment=False),
        weak_augment=layers.image_augmentation(
            (32, 32, 3), max_translation=4, horizontal_flip=True, noise_stddev=0.0
        ),
        strong_augment=layers.strong_augmentation(factor=0.3),
        threshold=cfg["threshold"],
        lambda_u=cfg["lambda_u"],
    )
    # Keras' CosineDecay with alpha cos(7 pi / 16) ends where the paper's schedule does;
    # in between it is within 0.13 x 0.03 of it. The EMA weights replace the trained ones
    # at the end of fit (use_ema).
    schedule = keras.optimizers.schedules.CosineDecay(
        cfg["learning_rate"], cfg["steps"], alpha=float(np.cos(7 * np.pi / 16))
    )
    optimizer = keras.optimizers.SGD(
        schedule, momentum=0.9, nesterov=True, weight_decay=5e-4, use_ema=True,
        ema_momentum=cfg["ema_decay"],
    )
    model.compile(optimizer=optimizer, metrics=["accuracy"])
    model.fit(train, epochs=-(-cfg["steps"] // steps_per_epoch), verbose=verbose)
    return model, (x_test, y_test)
