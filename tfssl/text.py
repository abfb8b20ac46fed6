"""In-graph text preprocessing with tensorflow-text: raw strings in, n-gram ids out.

`TextVectorizer` is a Keras layer that turns a batch of raw UTF-8 strings into padded
integer ids, entirely with TensorFlow ops, so a model that starts with it trains on string
arrays and its SavedModel serves raw strings. It follows the seed blog posts' Chinese text
classification setting (fastText over characters and their bigrams, toutiao news titles):

1. `standardize`: NFKC normalization (full-width `ＡＢＣ１２３！` becomes `abc123!`,
   compatibility ideographs become the unified ones) and Unicode case folding;
2. `tokenize`: words of every script, split at whitespace and at changes of Unicode script,
   then every Han character, punctuation mark and symbol (emoji included) is a token of its
   own (Chinese is written without spaces: one character per token is the usual fastText
   input when no word segmenter is at hand);
3. truncation to the first `max_length` tokens;
4. n-grams of the tokens, joined by a space (`"很 好"`), unigrams first;
5. ids: hashing into `num_buckets` bins, or lookup in a vocabulary given or learnt by
   `adapt`; `0` is padding (and, for the lookup, `1` the out-of-vocabulary id).

What Keras does and what tensorflow-text adds: `keras.layers.TextVectorization` lower-cases
with `tf.strings.lower`, splits at whitespace or into characters of every script, makes
n-grams with `tf.strings.ngrams` and maps them with a `StringLookup`; it cannot hash, and it
truncates after the n-grams, so a long text loses all its bigrams. The Keras parts are used
here as they are (`tf.strings.ngrams`, `keras.layers.Hashing` with `mask_value=""`,
`keras.layers.StringLookup` with its `adapt`); tensorflow-text adds what no core op does:
Unicode normalization (`normalize_utf8`), full case folding (`case_fold_utf8`), the script
aware word split (`UnicodeScriptTokenizer`) and the per character split of Han, punctuation
and symbols (`regex_split`). The SavedModel therefore holds the tensorflow-text ops
`TEXT_OPS`, and a process that loads it must `import tensorflow_text` first (TF Serving:
a build that links the tensorflow-text ops).

`MaskedAveragePooling1D` is the padding-free mean the fastText backbone needs,
`WordDropout` drops whole tokens of raw strings (FixMatch's strong view of a text),
`TfIdfReplacement` replaces their uninformative tokens (UDA's TF-IDF word replacement),
`load_word2vec` fills an embedding matrix from a word2vec text file, and
`pretrain_embeddings` learns one from unlabeled texts (PPMI of n-gram co-occurrences and a
truncated SVD) when no pretrained file is at hand.
"""

import collections

import keras
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

__all__ = [
    "DEFAULT_NUM_BUCKETS",
    "TEXT_OPS",
    "MaskedAveragePooling1D",
    "TextVectorizer",
    "TfIdfReplacement",
    "WordDropout",
    "load_word2vec",
    "pretrain_embeddings",
    "standardize",
    "tokenize",
]

DEFAULT_NUM_BUCKETS = 2**17
# Op types of tensorflow-text (not core TensorFlow) that a TextVectorizer puts in a graph.
TEXT_OPS = (
    "CaseFoldUTF8",
    "NormalizeUTF8",
    "RegexSplitWithOffsets",
    "UnicodeScriptTokenizeWithOffsets",
)
OOV_TOKEN = "[UNK]"
# Han characters, punctuation and symbols (emoji are So/Sk) are tokens of one code point.
_SINGLE_CHARACTER_TOKENS = r"[\p{Han}\p{P}\p{S}]"
# The kernel of `tf_text.UnicodeScriptTokenizer`. Its `tokenize` also computes every token's
# byte offsets and throws them away: about 1,400 graph ops for a batch of strings, which
# each trace of a text model pays (about 1 s on a CPU core); the kernel between a UTF-8
# decode and encode is 7 ops and gives the same tokens. Where a tensorflow-text release
# does not expose it, `tokenize` uses the class.
try:
    from tensorflow_text.python.ops.unicode_script_tokenizer import (
        gen_unicode_script_tokenizer as _UNICODE_SCRIPT_KERNEL,
    )
except ImportError:
    _UNICODE_SCRIPT_KERNEL = None


def standardize(texts):
    """NFKC-normalizes and case-folds UTF-8 strings (tensorflow-text ops).

    Example:

    ```python
    tfssl.text.standardize(tf.constant(["ＡＢＣ１２３！Straße"]))  # [b"abc123!strasse"]
    ```

    Args:
        texts: `tf.string` tensor of any shape.

    Returns:
        A `tf.string` tensor of the same shape.
    """
    return tf_text.case_fold_utf8(tf_text.normalize_utf8(texts, "NFKC"))


def tokenize(texts, max_length=None):
    """Splits standardized strings into words, and Han characters and symbols into one each.

    Words break at whitespace and where the Unicode script changes
    (`tf_text.UnicodeScriptTokenizer`), so `"iphone手机"` gives `"iphone"` and Chinese; then
    `tf_text.regex_split` cuts every Han character, punctuation mark and symbol out as a
    token of its own. Whitespace is dropped; an empty or blank string has no token.

    Example:

    ```python
    tfssl.text.tokenize(tf.constant(["iphone手机,很好😀"]))
    # [[b"iphone", b"手", b"机", b",", b"很", b"好", b"😀"]]
    ```

    Args:
        texts: 1-D `tf.string` tensor, usually `standardize`d.
        max_length: Keep only the first `max_length` tokens of each string. Defaults to
            `None` (all).

    Returns:
        A `tf.RaggedTensor` of tokens, shape `(batch, None)`.
    """
    words = _split_where_the_script_changes(texts)
    pieces = tf_text.regex_split(
        words.flat_values, _SINGLE_CHARACTER_TOKENS, _SINGLE_CHARACTER_TOKENS
    )
    tokens = words.with_flat_values(pieces).merge_dims(1, 2)
    if max_length is not None:
        tokens = tokens[:, :max_length]
    return tokens


def _split_where_the_script_changes(texts):
    """`tf_text.UnicodeScriptTokenizer(keep_whitespace=False).tokenize(texts)` for 1-D
    `texts`, without the byte offsets that it builds and drops."""
    if _UNICODE_SCRIPT_KERNEL is None:
        return tf_text.UnicodeScriptTokenizer(keep_whitespace=False).tokenize(texts)
    codepoints = tf.strings.unicode_decode(texts, "UTF-8")
    values, inner_splits, _, _, outer_splits = (
        _UNICODE_SCRIPT_KERNEL.unicode_script_tokenize_with_offsets(
            input_values=codepoints.flat_values,
            input_splits=codepoints.row_splits,
            keep_whitespace=False,
        )
    )
    words = tf.RaggedTensor.from_nested_row_splits(
        values, [outer_splits, inner_splits], validate=False
    )
    return tf.strings.unicode_encode(words, "UTF-8")


@keras.saving.register_keras_serializable(package="tfssl")
class TextVectorizer(keras.layers.Layer):
    """Raw strings to padded n-gram ids, in the graph (tensorflow-text and Keras ops).

    Each string is `standardize`d (NFKC, case folding), `tokenize`d (words; Han characters,
    punctuation and symbols one by one), cut to its first `max_length` tokens, and turned
    into its n-grams (all unigrams, then all bigrams, ... joined by a space). The n-grams
    become ids:

    - hashing (the default): `keras.layers.Hashing(num_buckets, mask_value="")`, ids in
      `[1, num_buckets)`; no vocabulary, nothing to adapt, as fastText's buckets;
    - lookup, when `vocabulary` or `max_tokens` is given: `keras.layers.StringLookup`, ids
      `2..` for the vocabulary and `1` for anything else; `adapt(texts)` learns the
      `max_tokens - 2` most frequent n-grams.

    Id `0` is padding: rows are padded to the longest row of the batch, or to exactly
    `output_length` ids when it is set (longer rows are cut). The empty string gives a row of
    padding only.

    Example:

    ```python
    vectorizer = tfssl.text.TextVectorizer(num_buckets=1000, ngrams=2)
    vectorizer(tf.constant(["很好 good", ""]))  # int64 (2, 5): 3 unigrams + 2 bigrams, zeros

    vectorizer = tfssl.text.TextVectorizer(max_tokens=20000)
    vectorizer.adapt(train_texts)
    ```

    Args:
        num_buckets: Number of hash bins including the padding id 0. Defaults to `None`:
            `DEFAULT_NUM_BUCKETS` (2**17) when hashing; must stay `None` with a vocabulary.
        vocabulary: N-grams (strings, tokens joined by a space) for the lookup mode, or
            `None`. Defaults to `None`.
        max_tokens: Largest vocabulary size in lookup mode, padding and OOV ids included,
            as `keras.layers.StringLookup`'s. Defaults to `None`.
        ngrams: `n` for the n-grams 1..n, or a tuple of widths such as `(1, 2)`.
            Defaults to `2`.
        max_length: Tokens kept per string, before the n-grams. Defaults to `256`.
        output_length: Fixed number of ids per row, or `None` to pad to the longest row of
            the batch. Defaults to `None`.
        **kwargs: `keras.layers.Layer` arguments (e.g. `name`).

    Raises:
        ValueError: If an argument is out of range, or `num_buckets` is given together with
            `vocabulary` or `max_tokens`.
    """

    def __init__(
        self,
        num_buckets=None,
        vocabulary=None,
        max_tokens=None,
        ngrams=2,
        max_length=256,
        output_length=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.ngrams = _check_ngrams(ngrams)
        _check_optional_positive("max_length", max_length)
        _check_optional_positive("output_length", output_length)
        self.lookup_mode = vocabulary is not None or max_tokens is not None
        if self.lookup_mode and num_buckets is not None:
            raise ValueError(
                "Pass `num_buckets` (hashing) or `vocabulary`/`max_tokens` (lookup), not both. "
                f"Received: num_buckets={num_buckets}, max_tokens={max_tokens}, vocabulary of "
                f"{None if vocabulary is None else len(vocabulary)} entries"
            )
        if self.lookup_mode:
            if max_tokens is not None and (not _is_int(max_tokens) or max_tokens < 3):
                raise ValueError(
                    "`max_tokens` must be an integer >= 3 (padding, OOV and one n-gram). "
                    f"Received: max_tokens={max_tokens!r}"
                )
            self.ids = keras.layers.StringLookup(
                max_tokens=max_tokens,
                vocabulary=None if vocabulary is None else list(vocabulary),
                mask_token="",
                oov_token=OOV_TOKEN,
                num_oov_indices=1,
                name="lookup",
            )
        else:
            num_buckets = DEFAULT_NUM_BUCKETS if num_buckets is None else num_buckets
            if not _is_int(num_buckets) or num_buckets < 2:
                raise ValueError(
                    "`num_buckets` must be an integer >= 2 (padding and one bucket). "
                    f"Received: num_buckets={num_buckets!r}"
                )
            self.ids = keras.layers.Hashing(num_bins=num_buckets, mask_value="", name="hashing")
        self.num_buckets = None if self.lookup_mode else int(num_buckets)
        self.max_tokens = max_tokens
        self.max_length = max_length
        self.output_length = output_length
        # As keras.layers.TextVectorization: string inputs are not converted to floats.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        self.supports_jit = False

    def build(self, input_shape):
        # Hashing and StringLookup hold no weights: nothing to create.
        self.built = True

    def ngram_strings(self, texts):
        """The n-grams of each string, as a `tf.RaggedTensor` of shape `(batch, None)`."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        if texts.shape.rank == 2:
            texts = tf.squeeze(texts, axis=-1)
        tokens = tokenize(standardize(texts), self.max_length)
        return tf.strings.ngrams(tokens, ngram_width=self.ngrams, separator=" ")

    def call(self, inputs):
        ngrams = self.ngram_strings(inputs)
        # Padding with "" maps it to id 0 (Hashing's mask_value, StringLookup's mask_token).
        if self.output_length is None:
            padded = ngrams.to_tensor(default_value="")
        else:
            padded = ngrams.to_tensor(default_value="", shape=[None, self.output_length])
        return tf.cast(self.ids(padded), tf.int64)

    def adapt(self, data, batch_size=256, steps=None):
        """Learns the vocabulary of the lookup mode from texts.

        Args:
            data: Array of strings or a `tf.data.Dataset` of string batches.
            batch_size: Strings per batch when `data` is an array. Defaults to `256`.
            steps: Batches to read, or `None` for all. Defaults to `None`.

        Raises:
            ValueError: In hashing mode, which has no vocabulary.
        """
        if not self.lookup_mode:
            raise ValueError(
                "A hashing TextVectorizer has no vocabulary to adapt; pass `max_tokens` or "
                f"`vocabulary` for the lookup mode. Received: num_buckets={self.num_buckets}"
            )
        if not isinstance(data, tf.data.Dataset):
            data = tf.data.Dataset.from_tensor_slices(_as_string_array(data)).batch(batch_size)
        self.ids.adapt(data.map(lambda texts: self.ngram_strings(texts).flat_values), steps=steps)

    def vocabulary_size(self):
        """Number of ids, padding (and OOV) included: the `input_dim` of an `Embedding`."""
        if self.lookup_mode:
            return int(self.ids.vocabulary_size())
        return self.num_buckets

    def get_vocabulary(self):
        """The lookup mode's n-grams by id (`""` padding, `"[UNK]"` OOV first)."""
        if not self.lookup_mode:
            raise ValueError("A hashing TextVectorizer has no vocabulary.")
        return list(self.ids.get_vocabulary())

    def token_ids(self, ngrams):
        """Ids of n-gram strings as they are (no standardization or tokenization).

        Args:
            ngrams: 1-D array of strings, tokens joined by a space.

        Returns:
            An `int64` NumPy array of ids.
        """
        return tf.cast(self.ids(tf.constant(_as_string_array(ngrams))), tf.int64).numpy()

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_length)

    def compute_output_spec(self, inputs):
        return keras.KerasTensor((inputs.shape[0], self.output_length), dtype="int64")

    def get_config(self):
        config = super().get_config()
        vocabulary = None
        if self.lookup_mode and self.ids.vocabulary_size() > 2:
            # The adapted vocabulary goes into the config too, so that clone_model (Mean
            # Teacher's teacher) copies it; .keras files also keep it as an asset.
            vocabulary = [str(token) for token in self.get_vocabulary()[2:]]
        config.update(
            {
                "num_buckets": self.num_buckets,
                "vocabulary": vocabulary,
                "max_tokens": self.max_tokens,
                "ngrams": list(self.ngrams),
                "max_length": self.max_length,
                "output_length": self.output_length,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["ngrams"] = tuple(config["ngrams"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfssl")
class MaskedAveragePooling1D(keras.layers.Layer):
    """Mean over the unmasked steps of a sequence; zeros for a row with none.

    `keras.layers.GlobalAveragePooling1D` also honours the Keras mask, but divides by the
    number of unmasked steps, which is 0 for the empty string: its output is NaN. Here the
    denominator is at least 1. The seed author's TF1 fastText averaged over the padding
    too, so its features shrank with the padding of the batch.

    Formula:

    ```
    output[b] = sum_t mask[b, t] * x[b, t] / max(1, sum_t mask[b, t])
    ```

    Example:

    ```python
    tensor = keras.layers.Embedding(1000, 16, mask_zero=True)(ids)
    features = tfssl.text.MaskedAveragePooling1D()(tensor)   # (batch, 16)
    ```
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return tf.reduce_mean(inputs, axis=1)
        weights = tf.cast(mask, inputs.dtype)[..., None]
        count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
        return tf.reduce_sum(inputs * weights, axis=1) / count

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2])


def load_word2vec(path, vectorizer, seed=0):
    """An embedding matrix for `vectorizer` from a word2vec text file.

    The file has one `word v1 v2 ... vd` line per word, after an optional `count d` header
    (gensim's `save_word2vec_format(binary=False)`). Each word is tokenized as the texts are
    (`standardize`, `tokenize`); a word of `n` tokens is the n-gram of those tokens (`"很好"`
    is the bigram `"很 好"`), kept when `n` is one of the vectorizer's widths. Its vector
    goes to that n-gram's id: with hashing, the mean of the words that share a bucket; in
    lookup mode only n-grams of the vocabulary (the OOV id gets no word vector). Ids that get
    no vector are drawn from a normal distribution with the standard deviation of the
    file's vectors; the padding row 0 is zero.

    Example:

    ```python
    vectorizer = tfssl.text.TextVectorizer(num_buckets=2**17)
    matrix = tfssl.text.load_word2vec("sgns.char.txt", vectorizer)
    backbone = tfssl.backbones.fasttext(2, vectorizer=vectorizer, embeddings=matrix)
    ```

    Args:
        path: Path of the UTF-8 text file.
        vectorizer: The `TextVectorizer` whose ids the rows follow (adapted, in lookup
            mode).
        seed: Seed of the rows drawn at random. Defaults to `0`.

    Returns:
        A float32 array of shape `(vectorizer.vocabulary_size(), d)`.

    Raises:
        ValueError: If a line's length disagrees with the others or with the header, or
            the file holds no vector.
    """
    words, vectors = _read_word2vec(path)
    size, dim = vectorizer.vocabulary_size(), vectors.shape[1]
    scale = float(np.std(vectors)) or 0.1
    tokens = tokenize(standardize(tf.constant(_as_string_array(words)))).to_list()
    lengths = np.array([len(row) for row in tokens])
    ngrams = np.array([b" ".join(row) for row in tokens], dtype=object)
    usable = np.isin(lengths, vectorizer.ngrams)
    ids = vectorizer.token_ids(ngrams[usable]) if usable.any() else np.zeros(0, np.int64)
    vectors = vectors[usable]
    if vectorizer.lookup_mode:
        known = ids > 1
        ids, vectors = ids[known], vectors[known]
    matrix = np.random.default_rng(seed).normal(0.0, scale, (size, dim))
    sums = np.zeros((size, dim))
    counts = np.zeros(size)
    np.add.at(sums, ids, vectors)
    np.add.at(counts, ids, 1.0)
    found = counts > 0
    matrix[found] = sums[found] / counts[found, None]
    matrix[0] = 0.0
    return matrix.astype(np.float32)


def pretrain_embeddings(
    texts,
    vectorizer,
    dim,
    window=5,
    max_ngrams=20000,
    smoothing=0.75,
    power_iterations=4,
    batch_size=2048,
    seed=0,
):
    """N-gram vectors for `vectorizer`'s ids from unlabeled texts: PPMI and a truncated SVD.

    The pretrained embeddings of a semi-supervised text model, learnt in the corpus (no
    download): an n-gram that occurs in no labeled text still gets a vector near those of
    the n-grams it appears with. Co-occurrence counts are made over the vectorizer's own
    ids (hash buckets or vocabulary ids, so collisions are those the model sees): two
    n-grams of any of the vectorizer's widths co-occur when their first tokens are 1 to
    `window` tokens apart in a text (after `standardize`, `tokenize` and the vectorizer's
    `max_length`). Only the `max_ngrams` most frequent ids get a vector from the counts.

    The counts become a positive pointwise mutual information matrix with the context
    distribution smoothed by `smoothing` (Levy, Goldberg and Dagan), and the vectors are its
    top `dim` left singular vectors scaled by the square root of the singular values, from
    a randomized SVD (Halko, Martinsson and Tropp) with TensorFlow's sparse matmul; when
    `dim` plus the oversampling reaches the number of ids, the SVD is exact. Rows that get
    no vector (ids never seen in `texts`, or beyond `max_ngrams`) are drawn from a normal
    distribution with the standard deviation of the others, as in `load_word2vec`; the
    padding row 0 is zero.

    Use only training texts (labeled and unlabeled), never validation or test texts.

    Formula:

    ```
    c[i, j]  = number of pairs (n-gram i, n-gram j), starts 1..window tokens apart
    PPMI[i, j] = max(0, log(c[i, j] * sum_j' c_a[j'] / (c[i, :].sum() * c_a[j])))
                 with c_a[j] = c[:, j].sum() ** smoothing
    PPMI ~ U S V^T (top dim),  vectors = U sqrt(S)
    ```

    Example:

    ```python
    vectorizer = tfssl.text.TextVectorizer(num_buckets=16384)
    matrix = tfssl.text.pretrain_embeddings(train_texts, vectorizer, dim=32)
    backbone = tfssl.backbones.fasttext(2, vectorizer=vectorizer, embedding_dim=32,
                                        embeddings=matrix)
    ```

    Args:
        texts: Array of strings: training texts only.
        vectorizer: The `TextVectorizer` whose ids the rows follow (adapted, in lookup mode).
        dim: Size of the vectors, a positive integer.
        window: Largest distance in tokens between the starts of two co-occurring n-grams.
            Defaults to `5`.
        max_ngrams: Most frequent ids that get a vector from the counts. Defaults to `20000`.
        smoothing: Exponent of the context counts, in (0, 1]; 1 is plain PPMI. Defaults to
            `0.75`.
        power_iterations: Power iterations of the randomized SVD. Defaults to `4`.
        batch_size: Texts tokenized and counted at a time. Defaults to `2048`.
        seed: Seed of the SVD's random projection and of the rows drawn at random.
            Defaults to `0`.

    Returns:
        A float32 array of shape `(vectorizer.vocabulary_size(), dim)`.

    Raises:
        ValueError: If an argument is out of range, or no two n-grams of `texts` co-occur.

    References:
        - Levy, Goldberg and Dagan, "Improving Distributional Similarity with Lessons
          Learned from Word Embeddings", TACL 2015 (PPMI, context smoothing, `U sqrt(S)`).
        - Halko, Martinsson and Tropp, "Finding Structure with Randomness", arXiv 0909.4061.
    """
    for name, value in (
        ("dim", dim),
        ("window", window),
        ("max_ngrams", max_ngrams),
        ("batch_size", batch_size),
    ):
        if not _is_int(value) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    if not _is_int(power_iterations) or power_iterations < 0:
        raise ValueError(
            "`power_iterations` must be an integer >= 0. "
            f"Received: power_iterations={power_iterations!r}"
        )
    number = isinstance(smoothing, (int, float)) and not isinstance(smoothing, bool)
    if not number or not 0 < smoothing <= 1:
        raise ValueError(
            f"`smoothing` must be a number in (0, 1]. Received: smoothing={smoothing!r}"
        )
    texts = _as_string_array(texts)
    size = vectorizer.vocabulary_size()
    positions = [
        _ngram_id_positions(texts[i : i + batch_size], vectorizer)
        for i in range(0, len(texts), batch_size)
    ]
    frequency = np.zeros(size, np.int64)
    for batch in positions:
        for ids in batch:
            frequency += np.bincount(ids[ids > 0], minlength=size)
    frequency[0] = 0
    kept = np.argsort(-frequency, kind="stable")[: min(max_ngrams, np.count_nonzero(frequency))]
    compact = np.full(size, -1, np.int64)
    compact[kept] = np.arange(len(kept))
    rows, cols, counts = _cooccurrence(positions, compact, len(kept), window)
    if not len(counts):
        raise ValueError(
            f"No two n-grams of the {len(texts)} texts are within window={window} tokens of "
            "each other: there is nothing to learn vectors from."
        )
    ppmi = _ppmi(rows, cols, counts, len(kept), smoothing)
    vectors = _truncated_svd_vectors(*ppmi, len(kept), dim, power_iterations, seed)
    scale = float(np.std(vectors)) or 0.1
    matrix = np.random.default_rng(seed).normal(0.0, scale, (size, dim))
    matrix[kept] = vectors
    matrix[0] = 0.0
    return matrix.astype(np.float32)


def _ngram_id_positions(texts, vectorizer):
    """Per width, a `(texts, tokens)` array of the id of the n-gram starting there, or 0."""
    tokens = tokenize(standardize(tf.constant(texts)), vectorizer.max_length)
    length = max(1, int(tf.reduce_max(tokens.row_lengths())) if len(texts) else 1)
    grids = []
    for width in vectorizer.ngrams:
        ngrams = tf.strings.ngrams(tokens, ngram_width=width, separator=" ")
        ids = tf.cast(vectorizer.ids(ngrams.flat_values), tf.int64).numpy()
        rows = ngrams.value_rowids().numpy()
        starts = np.arange(len(ids)) - ngrams.row_starts().numpy()[rows]
        grid = np.zeros((len(texts), length), np.int64)
        grid[rows, starts] = ids
        grids.append(grid)
    return grids


def _cooccurrence(positions, compact, num_ids, window):
    """`(rows, cols, counts)` of the symmetric co-occurrence counts of the compact ids."""
    keys, weights = [], []
    for grids in positions:
        pairs = []
        for distance in range(1, window + 1):
            for left in grids:
                for right in grids:
                    if distance >= left.shape[1]:
                        continue
                    a = compact[left[:, :-distance]]
                    b = compact[right[:, distance:]]
                    both = (a >= 0) & (b >= 0)
                    a, b = a[both], b[both]
                    pairs += [a * num_ids + b, b * num_ids + a]
        if pairs:
            batch_keys, batch_counts = np.unique(np.concatenate(pairs), return_counts=True)
            keys.append(batch_keys)
            weights.append(batch_counts)
    if not keys:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    keys, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    counts = np.bincount(inverse, weights=np.concatenate(weights))
    return keys // num_ids, keys % num_ids, counts


def _ppmi(rows, cols, counts, num_ids, smoothing):
    row_sums = np.bincount(rows, weights=counts, minlength=num_ids)
    context = np.bincount(cols, weights=counts, minlength=num_ids) ** smoothing
    pmi = np.log(counts * context.sum() / (row_sums[rows] * context[cols]))
    positive = pmi > 0
    return rows[positive], cols[positive], pmi[positive]


def _truncated_svd_vectors(rows, cols, values, num_ids, dim, power_iterations, seed):
    """`U[:, :dim] sqrt(S[:dim])` of the sparse `num_ids x num_ids` matrix, zero-padded to dim."""
    oversampled = dim + 10
    if oversampled >= num_ids:
        dense = np.zeros((num_ids, num_ids))
        dense[rows, cols] = values
        u, s, _ = np.linalg.svd(dense)
    else:
        matrix = tf.sparse.reorder(
            tf.sparse.SparseTensor(np.stack([rows, cols], axis=1), values, (num_ids, num_ids))
        )
        probe = np.random.default_rng(seed).normal(size=(num_ids, oversampled))
        basis, _ = np.linalg.qr(tf.sparse.sparse_dense_matmul(matrix, probe).numpy())
        for _ in range(power_iterations):
            back = tf.sparse.sparse_dense_matmul(matrix, basis, adjoint_a=True).numpy()
            basis, _ = np.linalg.qr(back)
            basis, _ = np.linalg.qr(tf.sparse.sparse_dense_matmul(matrix, basis).numpy())
        # B = basis^T M is small: its SVD gives M's top singular triplets.
        projected = tf.sparse.sparse_dense_matmul(matrix, basis, adjoint_a=True).numpy().T
        u_small, s, _ = np.linalg.svd(projected, full_matrices=False)
        u = basis @ u_small
    vectors = np.zeros((num_ids, dim))
    rank = min(dim, len(s))
    vectors[:, :rank] = u[:, :rank] * np.sqrt(s[:rank])
    return vectors


def _read_word2vec(path):
    words, rows, dim = [], [], None
    with open(path, encoding="utf-8") as f:
        for line_number, line in enumerate(f, start=1):
            fields = line.rstrip().split(" ")
            if line_number == 1 and len(fields) == 2 and all(v.isdigit() for v in fields):
                dim = int(fields[1])
                continue
            if not line.strip():
                continue
            if dim is None:
                dim = len(fields) - 1
            if len(fields) - 1 != dim or dim == 0:
                raise ValueError(
                    f"{path}:{line_number}: expected a word and {dim} numbers, got "
                    f"{len(fields)} fields."
                )
            words.append(fields[0])
            rows.append([float(v) for v in fields[1:]])
    if not rows:
        raise ValueError(f"{path} holds no word vector.")
    return words, np.array(rows, dtype=np.float64)


def _as_string_array(texts):
    array = np.asarray(texts)
    if array.dtype.kind == "O":
        array = np.array([t.encode("utf-8") if isinstance(t, str) else t for t in array])
    return array


@keras.saving.register_keras_serializable(package="tfssl")
class WordDropout(keras.layers.Layer):
    """Drops each token of a raw string with probability `rate`, in training only.

    The text counterpart of an image's strong augmentation (FixMatch on text: the strong
    view of a review is the review with some of its words, or Han characters, left out).
    The strings are standardized and split as `TextVectorizer` does (`standardize`,
    `tokenize`), each token is kept with probability `1 - rate`, and the kept ones are
    joined by spaces: a `TextVectorizer` reads the result as the same tokens minus the
    dropped ones (whitespace separates tokens and is never one), so the n-grams that
    spanned a dropped token are replaced by n-grams of its neighbours. At inference, and
    with `rate=0`, the strings pass unchanged.

    Unlike `keras.layers.Dropout(rate, noise_shape=(None, None, 1))` on the embeddings (the
    backbones' `token_dropout`), this works on the input, so it can make a second view of
    the same text for a model that feeds both views through one backbone.

    Example:

    ```python
    strong = tfssl.text.WordDropout(0.3, seed=0)
    model = tfssl.models.FixMatch(tfssl.backbones.fasttext(2),
                                  weak_augment=keras.layers.Identity(), strong_augment=strong)
    ```

    Args:
        rate: Probability of dropping each token, in [0, 1].
        seed: Seed of the draws. Defaults to `None` (unseeded).

    Raises:
        ValueError: If `rate` is outside [0, 1].
    """

    def __init__(self, rate, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if not training or self.rate == 0:
            return inputs
        tokens = tokenize(standardize(inputs))
        draws = keras.random.uniform(
            tf.shape(tokens.flat_values), seed=self.seed_generator
        )
        kept = tf.ragged.boolean_mask(tokens, tokens.with_flat_values(draws >= self.rate))
        return tf.strings.reduce_join(kept, axis=1, separator=" ")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="tfssl")
class TfIdfReplacement(keras.layers.Layer):
    """Replaces uninformative tokens of raw strings by sampled ones, in training only.

    UDA's TF-IDF word replacement (Xie et al.), the strong view of a text that keeps its
    keywords: the tokens of low TF-IDF in a text (frequent, uninformative ones) are replaced
    more often than its keywords, and the replacements are drawn from the vocabulary of the
    training texts, tokens of low corpus TF-IDF more often. As `WordDropout`, the strings are
    `standardize`d and `tokenize`d as `TextVectorizer` does, and the result is the tokens
    joined by spaces. At inference, and with `rate=0`, the strings pass unchanged.

    The statistics come from training texts, in the Keras preprocessing style:
    `layer.adapt(texts)` computes the sorted vocabulary `tokens`, their `idf` and the
    sampling `probabilities`; they can also be passed to the constructor, which is how
    `get_config` / `from_config` and `keras.models.clone_model` (Mean Teacher's teacher)
    copy an adapted layer. A token absent from the adapted texts scores the largest IDF of
    the vocabulary: it is never replaced.

    Keras has no text augmentation layer (its preprocessing layers augment images and
    audio), hence this one.

    Example:

    ```python
    noise = tfssl.text.TfIdfReplacement(0.3, seed=0)
    noise.adapt(train_texts)
    inputs = keras.Input(shape=(), dtype="string")
    model = keras.Model(inputs, tfssl.backbones.fasttext(2)(noise(inputs)))
    ```

    Args:
        rate: Expected share of a text's tokens that are replaced, in [0, 1]. Defaults to
            `0.3`.
        seed: Seed of the draws. Defaults to `None` (unseeded).
        tokens: Vocabulary (strings), as `adapt` computes it, or `None`. Defaults to `None`.
        idf: IDF of each token of `tokens`, or `None`. Defaults to `None`.
        probabilities: Sampling probability of each token of `tokens`, or `None`. Defaults
            to `None`.
        **kwargs: `keras.layers.Layer` arguments (e.g. `name`).

    Returns:
        On call, a `tf.string` tensor of the inputs' shape.

    Raises:
        ValueError: If `rate` is outside [0, 1]; if `tokens`, `idf` and `probabilities` are
            not all given (or all `None`) with one value per token; on call, if the layer has
            no statistics (neither adapted nor given them).

    Formula:

    With `N` texts, `df_t` the number of texts holding token `t`, `c_t(d)` its count in
    text `d` and `|d|` the number of tokens of `d`:

    ```
    idf_t = log(N / df_t)
    corpus_tfidf_t = sum_d c_t(d) / |d| * idf_t
    probabilities_t = (max(corpus_tfidf) - corpus_tfidf_t)
                      / sum_s (max(corpus_tfidf) - corpus_tfidf_s)
    ```

    Each token `t` of a text `d` is replaced, independently, with probability

    ```
    gap_t = max_{s in d} idf_s - idf_t
    p_t = min(1, rate * gap_t / mean_{s in d} gap_s)          (0 when all gaps are 0)
    ```

    so the expected number of replaced tokens is `rate * |d|` unless the clipping at 1
    binds, and the token of the text's largest IDF is kept. The replacement is drawn from
    the vocabulary with `probabilities`.

    Differences from UDA's code (`TfIdfWordRep`): the score of a token in a text is its IDF
    (UDA multiplies it by the token's share of the text, `c_t(d) / |d|`); tokens are this
    module's (words, Han characters one by one), not word pieces; a text whose tokens all
    have the same score is left unchanged (UDA divides by zero).

    References:
        Xie, Dai, Hovy, Luong, Le, "Unsupervised Data Augmentation for Consistency
        Training", arXiv 1904.12848 (appendix: TF-IDF based word replacing).
    """

    def __init__(self, rate=0.3, seed=None, tokens=None, idf=None, probabilities=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = _check_rate(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.tokens = self.idf = self.probabilities = None
        given = [value is not None for value in (tokens, idf, probabilities)]
        if any(given) and not all(given):
            raise ValueError(
                "Pass `tokens`, `idf` and `probabilities` together (or none, then `adapt`). "
                f"Received: tokens={_count(tokens)}, idf={_count(idf)}, "
                f"probabilities={_count(probabilities)}"
            )
        if all(given):
            self._set_statistics(tokens, idf, probabilities)
        # As TextVectorizer: string inputs are not converted to floats.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True

    def adapt(self, data):
        """Computes the statistics (`tokens`, `idf`, `probabilities`) of training texts.

        Args:
            data: Array of strings or a `tf.data.Dataset` of string batches.
        """
        if isinstance(data, tf.data.Dataset):
            data = np.concatenate([np.reshape(batch, [-1]) for batch in data.as_numpy_iterator()])
        texts = tf.constant(_as_string_array(np.reshape(np.asarray(data, dtype=object), [-1])))
        self._set_statistics(*_tfidf_statistics(tokenize(standardize(texts)).to_list()))

    def _set_statistics(self, tokens, idf, probabilities):
        tokens = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in tokens]
        if not tokens or not len(tokens) == len(idf) == len(probabilities):
            raise ValueError(
                "`tokens`, `idf` and `probabilities` must hold one value per token, at least "
                f"one. Received: tokens={len(tokens)}, idf={len(idf)}, "
                f"probabilities={len(probabilities)}"
            )
        self.tokens = tokens
        self.idf = [float(v) for v in idf]
        self.probabilities = [float(v) for v in probabilities]
        self._token_tensor = tf.constant(tokens, dtype=tf.string)
        self._idf_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                self._token_tensor, tf.constant(self.idf, tf.float32)
            ),
            default_value=max(self.idf),
        )
        self._logits = tf.math.log(tf.constant(self.probabilities, tf.float32) + 1e-12)[None, :]

    def call(self, inputs, training=False):
        if self.tokens is None:
            raise ValueError(
                f"TfIdfReplacement {self.name!r} has no statistics: call `adapt(texts)` on the "
                "training texts first, or pass `tokens`, `idf` and `probabilities`. "
                "Received: tokens=None"
            )
        if not training or self.rate == 0:
            return inputs
        texts = tf.convert_to_tensor(inputs, dtype=tf.string)
        tokens = tokenize(standardize(tf.reshape(texts, [-1])))
        flat = tokens.flat_values
        rows = tokens.value_rowids()
        scores = tf.ragged.map_flat_values(self._idf_table.lookup, tokens)
        gap = tf.gather(tf.reduce_max(scores, axis=1), rows) - scores.flat_values
        mean_gap = tf.gather(tf.math.unsorted_segment_mean(gap, rows, tokens.nrows()), rows)
        probability = tf.minimum(1.0, tf.math.divide_no_nan(self.rate * gap, mean_gap))
        replace = keras.random.uniform(tf.shape(flat), seed=self.seed_generator) < probability
        drawn = keras.random.categorical(
            self._logits, tf.shape(flat)[0], seed=self.seed_generator
        )[0]
        new = tf.where(replace, tf.gather(self._token_tensor, drawn), flat)
        joined = tf.strings.reduce_join(tokens.with_flat_values(new), axis=1, separator=" ")
        return tf.reshape(joined, tf.shape(texts))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_output_spec(self, inputs, training=False):
        # Not traced: a model can be built before `adapt`, as with Keras preprocessing layers.
        return keras.KerasTensor(inputs.shape, dtype="string")

    def get_config(self):
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "tokens": self.tokens,
            "idf": self.idf,
            "probabilities": self.probabilities,
        }


def _tfidf_statistics(rows):
    """`(tokens, idf, probabilities)` of tokenized texts (lists of UTF-8 bytes tokens)."""
    document_frequency = collections.Counter(token for row in rows for token in set(row))
    # Byte order of UTF-8 is code point order: the tokens sort as strings would.
    tokens = sorted(document_frequency)
    index = {token: i for i, token in enumerate(tokens)}
    idf = np.log(len(rows) / np.array([document_frequency[t] for t in tokens], dtype=float))
    corpus_tfidf = np.zeros(len(tokens))
    for row in rows:
        for token, count in collections.Counter(row).items():
            corpus_tfidf[index[token]] += count / len(row) * idf[index[token]]
    weights = corpus_tfidf.max() - corpus_tfidf
    return tokens, idf, weights / weights.sum()


def _count(values):
    return None if values is None else f"{len(values)} values"


def _check_rate(rate):
    """`rate` as a float, checked to be a number in [0, 1]."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ValueError(f"`rate` must be a number in [0, 1]. Received: rate={rate!r}")
    return float(rate)


def _check_ngrams(ngrams):
    if _is_int(ngrams):
        widths = tuple(range(1, int(ngrams) + 1))
    else:
        widths = tuple(ngrams) if isinstance(ngrams, (list, tuple)) else ()
    if not widths or not all(_is_int(n) and n > 0 for n in widths):
        raise ValueError(
            f"`ngrams` must be a positive integer n (widths 1..n) or a tuple of positive "
            f"widths. Received: ngrams={ngrams!r}"
        )
    return tuple(int(n) for n in widths)


def _check_optional_positive(name, value):
    if value is not None and (not _is_int(value) or value <= 0):
        raise ValueError(f"`{name}` must be a positive integer or None. Received: {name}={value!r}")


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)
