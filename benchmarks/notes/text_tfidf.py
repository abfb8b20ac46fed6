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

Differences from UDA's code: the score of a token in a text is its IDF (UDA multiplies by its
count in the text); tokens are the tokenizer's (Han characters, words), not word pieces.
"""

import argparse
import collections
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "estimators"))

import text_classification  # noqa: E402
from text_bench import RUNS, run_all  # noqa: E402
from tfssl import text  # noqa: E402


def tfidf_statistics(texts):
    """`(tokens, idf, replacement_probabilities)` of the training texts (UDA's)."""
    rows = text.tokenize(text.standardize(tf.constant(list(texts)))).to_list()
    document_frequency = collections.Counter(token for row in rows for token in set(row))
    tokens = sorted(document_frequency)
    index = {token: i for i, token in enumerate(tokens)}
    idf = np.log(len(rows) / np.array([document_frequency[t] for t in tokens], dtype=float))
    corpus_tfidf = np.zeros(len(tokens))
    for row in rows:
        for token, count in collections.Counter(row).items():
            corpus_tfidf[index[token]] += count / len(row) * idf[index[token]]
    weights = corpus_tfidf.max() - corpus_tfidf
    return np.array(tokens, dtype=object), idf, weights / weights.sum()


class TfIdfReplacement(keras.layers.Layer):
    """Replaces low-TF-IDF tokens of raw strings by sampled tokens, in training only."""

    def __init__(self, tokens, idf, probabilities, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        # Plain lists in the config: Mean Teacher's teacher is a clone_model of the backbone.
        self.config = {
            "tokens": [str(t) for t in tokens],
            "idf": [float(v) for v in idf],
            "probabilities": [float(v) for v in probabilities],
            "rate": rate,
            "seed": seed,
        }
        self.tokens = tf.constant(list(tokens), dtype=tf.string)
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(self.tokens, tf.constant(idf, tf.float32)),
            default_value=float(np.max(idf)),
        )
        self.logits = tf.math.log(tf.constant(probabilities, tf.float32) + 1e-12)[None, :]
        self.rate = rate
        self.seed_generator = keras.random.SeedGenerator(seed)
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        tokens = text.tokenize(text.standardize(inputs))
        flat = tokens.flat_values
        rows = tokens.value_rowids()
        scores = tf.ragged.map_flat_values(self.table.lookup, tokens)
        gap = tf.gather(tf.reduce_max(scores, axis=1), rows) - scores.flat_values
        mean_gap = tf.gather(tf.math.unsorted_segment_mean(gap, rows, tokens.nrows()), rows)
        # UDA: a text's expected share of replaced tokens is `rate`, low TF-IDF ones first.
        probability = tf.minimum(1.0, tf.math.divide_no_nan(self.rate * gap, mean_gap))
        replace = keras.random.uniform(tf.shape(flat), seed=self.seed_generator) < probability
        drawn = keras.random.categorical(
            self.logits, tf.shape(flat)[0], seed=self.seed_generator
        )[0]
        new = tf.where(replace, tf.gather(self.tokens, drawn), flat)
        return tf.strings.reduce_join(tokens.with_flat_values(new), axis=1, separator=" ")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), **self.config}


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
    statistics["value"] = tfidf_statistics(x)
    statistics["seed"] = args.seed
    return (x, y_semi), test


def noisy_backbone(args):
    backbone = build_backbone(args)
    inputs = keras.Input(shape=(), dtype="string", name="text")
    noise = TfIdfReplacement(*statistics["value"], flags.rate, seed=statistics["seed"])
    return keras.Model(inputs, backbone(noise(inputs)), name="noisy_" + backbone.name)


text_classification.load_data = load_data_and_statistics
text_classification.build_backbone = noisy_backbone
run_all(flags.seeds, flags.runs, flags.flags, tag=f"tfidf_rate={flags.rate}")
