"""coursepkg.data: idx parsing, each offline source, the clear error, never a substitute dataset."""

from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from coursepkg import data
from coursepkg.data import DatasetNotFoundError, dataset_info, load_dataset, read_idx, subset


def write_idx(path, array: np.ndarray, *, gz: bool = False) -> None:
    """An independent idx writer (the format of LeCun et al.'s MNIST page)."""
    codes = {np.uint8: 0x08, np.int32: 0x0C}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim])
    header += b"".join(struct.pack(">I", s) for s in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(payload)


def fake_mnist_dir(directory, n_train=12, n_test=5, *, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(directory / f"{split}-images-idx3-ubyte{suffix}", images, gz=gz)
        write_idx(directory / f"{split}-labels-idx1-ubyte{suffix}", labels, gz=gz)
    return directory


@pytest.fixture
def no_default_sources(monkeypatch, tmp_path):
    """Hide Debian's files and the download cache so only the source under test can serve."""
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setenv("COURSEPKG_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, gz):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array, gz=gz)
    np.testing.assert_array_equal(read_idx(path), array)


def test_read_idx_big_endian_int32(tmp_path):
    array = np.array([1, -2, 70_000], dtype=np.int32)
    write_idx(tmp_path / "b.idx", array)
    np.testing.assert_array_equal(read_idx(tmp_path / "b.idx"), array)


def test_read_idx_rejects_truncated_and_foreign_files(tmp_path):
    array = np.zeros((4, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "ok.idx", array)
    raw = (tmp_path / "ok.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "png.idx").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ValueError, match="not an idx file"):
        read_idx(tmp_path / "png.idx")


def test_environment_directory_is_the_first_source(tmp_path, monkeypatch, no_default_sources):
    fake_mnist_dir(tmp_path, n_train=12, n_test=5, gz=False)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    x, y = load_dataset("fashion-mnist", "train", download=False)
    assert x.shape == (12, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (12,) and y.dtype == torch.int64
    assert 0.0 <= x.min() and x.max() <= 1.0
    expected = read_idx(tmp_path / "train-images-idx3-ubyte").astype(np.float32) / 255
    np.testing.assert_allclose(x[:, 0].numpy(), expected)
    x_test, _ = load_dataset("fashion-mnist", "test", download=False)
    assert len(x_test) == 5


def test_debian_package_source(tmp_path, monkeypatch, no_default_sources):
    (tmp_path / "debian").mkdir()
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", fake_mnist_dir(tmp_path / "debian", n_train=7))
    x, y = load_dataset("fashion-mnist", "train", download=False)
    assert len(x) == len(y) == 7


def test_debian_files_never_serve_another_dataset(tmp_path, monkeypatch, no_default_sources):
    (tmp_path / "debian").mkdir()
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", fake_mnist_dir(tmp_path / "debian"))
    with pytest.raises(DatasetNotFoundError, match="mnist not found"):
        load_dataset("mnist", "train", download=False)


def test_download_cache_source(tmp_path, no_default_sources):
    raw = tmp_path / "cache" / "data" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    fake_mnist_dir(raw, n_train=9)
    x, _ = load_dataset("fashion-mnist", "train", download=False)
    assert len(x) == 9


def test_cifar_pickle_layout(tmp_path, monkeypatch, no_default_sources):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, size=(3, 3072), dtype=np.uint8), "labels": [1, 2, 3]}
        with open(root / name, "wb") as fh:
            pickle.dump(batch, fh)
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    x, y = load_dataset("cifar10", "train", download=False)
    assert x.shape == (15, 3, 32, 32) and y.tolist() == [1, 2, 3] * 5
    assert float(x.max()) <= 1.0


def test_missing_data_error_says_what_to_do(no_default_sources):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion-mnist", "train", download=False)
    message = str(err.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert data.DATA_DIR_ENV in message
    assert "\n" not in message


def test_download_failure_is_reported_not_raised_raw(no_default_sources, monkeypatch):
    def offline(info, split):
        raise OSError("network unreachable")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("mnist", "test", download=True)


def test_unknown_dataset_and_split():
    with pytest.raises(ValueError, match="unknown dataset 'svhn'"):
        load_dataset("svhn")
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("fashion-mnist", "validation")


def test_metadata_carries_standard_budgets_and_classes():
    assert dataset_info("fashion-mnist").eps == pytest.approx(0.1)
    assert dataset_info("mnist").eps == pytest.approx(0.3)
    assert dataset_info("cifar10").eps == pytest.approx(8 / 255)
    assert dataset_info("Fashion_MNIST").classes[9] == "Ankle boot"
    assert all(len(dataset_info(n).classes) == 10 for n in ("fashion-mnist", "mnist", "cifar10"))


def test_subset_is_a_fixed_permutation():
    x = torch.arange(100.0).view(100, 1, 1, 1)
    y = torch.arange(100)
    xa, ya = subset(x, y, 10, seed=3)
    xb, yb = subset(x, y, 10, seed=3)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(xa.view(-1).long(), ya)  # images and labels stay paired
    assert len(set(ya.tolist())) == 10
    assert subset(x, y, None)[0] is x
    with pytest.raises(ValueError, match="positive"):
        subset(x, y, 0)


@pytest.mark.skipif(not data.DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_debian():
    x, y = load_dataset("fashion-mnist", "test", download=False)
    assert x.shape == (10_000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [1000] * 10  # the test set is balanced
