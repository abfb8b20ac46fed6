"""Step 3 (3) of benchmarks/notes/text.md: UDA's TF-IDF word replacement as the noise.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_tfidf.py --rate 0.3 --seeds 0 1 \
        --runs supervised te mt --flags "--validation-size 1500"

The protocol of `text_bench.py`, except that the backbone starts with `TfIdfReplacement`
(training passes only): each pass of a text replaces some of its tokens, those of low TF-IDF
(uninformative) more often, by tokens drawn from the training texts' vocabulary, low corpus
TF-IDF ones more often (Xie et al., "Unsupervised Data Augmentation for Consistency
Training", arXiv 1904.12848, appendix; their `TfIdfWordRep`). The statistics come from the
run's training texts only (the first `--train-size` texts of the training split, never the
validation or test texts). The supervised run gets the same noise (`supervised`: the
augmentation alone, without a consistency term).

The layer is `tfssl.text.TfIdfReplacement`; its docstring lists the differences from UDA's code.
"""

import argparse
import os
import sys

import keras

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import text_classification  # noqa: E402
from text_bench import RUNS, run_all  # noqa: E402
from tfssl import text  # noqa: E402


parser = argparse.ArgumentParser()
parser.add_argument("--rate", type=float, default=0.3, help="expected share of tokens replaced")
parser.add_argument("--seeds", nargs="+", default=["0", "1"])
parser.add_argument("--runs", nargs="+", choices=sorted(RUNS), default=["supervised", "te", "mt"])
parser.add_argument("--flags", default="", help="estimator flags appended to the protocol's")
flags = parser.parse_args()
build_backbone = text_classification.build_backbone
load_data = text_classification.load_data
statistics = {}


def load_data_and_statistics(args):
    (x, y_semi), test = load_data(args)
    noise = text.TfIdfReplacement(flags.rate, seed=args.seed)
    noise.adapt(x)
    statistics["config"] = noise.get_config()
    return (x, y_semi), test


def noisy_backbone(args):
    backbone = build_backbone(args)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    noise = text.TfIdfReplacement.from_config(statistics["config"])
    return keras.Model(inputs, backbone(noise(inputs)), name="noisy_" + backbone.name)


text_classification.load_data = load_data_and_statistics
text_classification.build_backbone = noisy_backbone
run_all(flags.seeds, flags.runs, flags.flags, tag=f"tfidf_rate={flags.rate}")
