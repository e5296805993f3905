"""Synthetic teacher task and the MNIST loader on IDX files written in the real on-disk format."""
import gzip
import struct

import numpy as np
import pytest
import torch

from lowbit_core.data.mnist import DataMissingError, load_mnist, mnist_missing
from lowbit_core.data.probe_batches import ProbeData
from lowbit_core.data.teacher import TeacherTask


def test_teacher_is_deterministic_and_balanced_enough():
    a, b = TeacherTask(16, 5, 8, seed=0), TeacherTask(16, 5, 8, seed=0)
    xa, ya = a.sample(2000, torch.Generator().manual_seed(1))
    xb, yb = b.sample(2000, torch.Generator().manual_seed(1))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert ya.dtype == torch.int64 and set(ya.unique().tolist()) <= set(range(5))
    assert len(ya.unique()) >= 3  # the labels are not degenerate
    # the labels are a function of x: the teacher's own argmax
    assert torch.equal(a.labels(xa), ya)


def _write_idx(path, array, gz):
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    if gz:
        with gzip.open(str(path) + ".gz", "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


def _fake_mnist(root, gz=False):
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    imgs, labels = rng.integers(0, 256, (12, 28, 28)), rng.integers(0, 10, 12)
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", imgs, gz)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels, gz)
    return imgs, labels


def test_mnist_gzipped_only_says_gunzip(tmp_path):
    _fake_mnist(tmp_path, gz=True)
    assert "gunzip" in mnist_missing(tmp_path)


def test_mnist_loads_idx_files(tmp_path):
    imgs, labels = _fake_mnist(tmp_path)
    assert mnist_missing(tmp_path) is None
    x, y = load_mnist(tmp_path)
    assert x.shape == (12, 784) and y.tolist() == labels.tolist()
    expected = (imgs[3].reshape(-1) / 255.0 - 0.1307) / 0.3081
    np.testing.assert_allclose(x[3].numpy(), expected, rtol=1e-5, atol=1e-6)
    data = ProbeData("mnist", str(tmp_path))
    xb, yb = data.sample(5, torch.Generator().manual_seed(0))
    assert data.in_dim == 784 and xb.shape == (5, 784) and len(set(map(tuple, xb.tolist()))) == 5


def test_mnist_missing_says_where(tmp_path):
    msg = mnist_missing(tmp_path)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg
    with pytest.raises(DataMissingError):
        load_mnist(tmp_path)
