"""The papers' settings (`--preset`), their published numbers and the papers to cite.

Not run by the default benchmark: they need a GPU and CIFAR-10 / SVHN (`--data-dir`);
`--preset NAME --dry-run` prints the configuration one would run.
"""

import json

import numpy as np

from benchmarking.methods import METHODS
from benchmarking.protocols import Protocol
from benchmarking.runner import fit_and_evaluate
from tfssl import backbones, data, datasets, schedules

__all__ = ["PAPERS", "PRESETS", "PUBLISHED_ROWS", "run_preset"]

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
