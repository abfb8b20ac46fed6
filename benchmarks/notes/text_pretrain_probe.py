"""Step 3 (1) of benchmarks/notes/text.md: do the pretrained n-gram vectors carry meaning?

    PYTHONPATH=$PWD .venv/bin/python benchmarks/notes/text_pretrain_probe.py

For the first 3,000 and 12,381 training texts (never the last 1,500, the validation texts):
the time of `tfssl.text.pretrain_embeddings`, the cosines between a few sentiment words, and
a ridge probe (least squares on -1/+1 targets, penalty 1) on the standardized mean vectors
of the 200 labeled texts of seed 0, scored on the 1,500 validation texts.
"""

import time

import numpy as np
import tensorflow as tf

from tfssl import data, datasets, text

WORDS = ["好", "差", "满意", "失望", "不错", "很好", "垃圾", "推荐"]

(x, y), _ = datasets.load_chinese_sentiment(split=True)
vectorizer = text.TextVectorizer(num_buckets=16384)
y_semi = data.mask_labels(y[:3000], 200, seed=0)
labeled = y_semi >= 0
train_ids = vectorizer(tf.constant(list(x[:3000][labeled]))).numpy()
validation_ids = vectorizer(tf.constant(list(x[-1500:]))).numpy()


def mean_vectors(matrix, ids):
    mask = (ids > 0)[..., None]
    return (matrix[ids] * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1)


for size in (3000, 12381):
    start = time.time()
    matrix = text.pretrain_embeddings(x[:size], vectorizer, 32)
    print(f"{size} texts: {time.time() - start:.0f} s")
    ids = vectorizer.token_ids([" ".join(word) for word in WORDS])
    unit = matrix[ids] / np.linalg.norm(matrix[ids], axis=1, keepdims=True)
    print(" ".join(WORDS))
    print(np.round(unit @ unit.T, 2))
    features = mean_vectors(matrix, train_ids)
    mean, std = features.mean(axis=0), features.std(axis=0)
    design = np.c_[(features - mean) / std, np.ones(len(features))]
    targets = 2.0 * y_semi[labeled] - 1.0
    weights = np.linalg.solve(design.T @ design + np.eye(design.shape[1]), design.T @ targets)
    validation = np.c_[(mean_vectors(matrix, validation_ids) - mean) / std, np.ones(1500)]
    accuracy = np.mean((validation @ weights > 0) == (y[-1500:] == 1))
    print(f"ridge probe, validation accuracy: {accuracy:.4f}")
