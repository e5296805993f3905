"""CIFAR-10/100 loaders on tiny folders written in torchvision's real pickle format, and the .npz loader."""
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lowbit_core.data.cifar import (DataMissingError, cifar_missing, cifar_stats, class_names, load_cifar,
                                    normalize, read_cifar_batch)

SHARED_NPZ = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "cifar10" / "cifar10-train10k-test10k.npz"


def _rows(imgs_hwc):
    """HWC uint8 images -> the file's rows: 1024 R, 1024 G, 1024 B values, each plane row-major."""
    return np.ascontiguousarray(imgs_hwc.transpose(0, 3, 1, 2).reshape(len(imgs_hwc), 3072))


def _dump(path, entry):
    with open(path, "wb") as fh:
        pickle.dump(entry, fh, protocol=2)


def _fake_cifar10(root, per_batch=3, bytes_keys=True):
    """data_batch_1..5, test_batch, batches.meta; returns (train HWC, train labels, test HWC, test labels)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    imgs, labels = [], []
    for i in range(1, 6):
        im, lb = rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, per_batch)
        _dump(folder / f"data_batch_{i}", {k("batch_label"): k(f"training batch {i} of 5"), k("labels"): lb.tolist(),
                                            k("data"): _rows(im), k("filenames"): [k(f"f{j}.png") for j in range(per_batch)]})
        imgs.append(im)
        labels.append(lb)
    test_im, test_lb = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), np.array([9, 0, 3, 7])
    _dump(folder / "test_batch", {k("batch_label"): k("testing batch 1 of 1"), k("labels"): test_lb.tolist(),
                                  k("data"): _rows(test_im)})
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    _dump(folder / "batches.meta", {k("label_names"): [k(n) for n in names], k("num_vis"): 3072})
    return np.concatenate(imgs), np.concatenate(labels), test_im, test_lb


def _fake_cifar100(root, bytes_keys=False):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    k = (lambda s: s.encode()) if bytes_keys else (lambda s: s)
    out = []
    for split, n in (("train", 6), ("test", 5)):
        im, fine = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 100, n)
        fine[0] = 99
        _dump(folder / split, {k("filenames"): [k("x.png")] * n, k("fine_labels"): fine.tolist(),
                               k("coarse_labels"): (fine // 5).tolist(), k("data"): _rows(im)})
        out += [im, fine]
    _dump(folder / "meta", {k("fine_label_names"): [k(f"c{i}") for i in range(100)],
                            k("coarse_label_names"): [k(f"s{i}") for i in range(20)]})
    return out


def _chw(imgs_hwc):
    return torch.from_numpy(imgs_hwc).permute(0, 3, 1, 2)


@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_folder_round_trips_pixels_and_labels(tmp_path, bytes_keys):
    tr_im, tr_lb, te_im, te_lb = _fake_cifar10(tmp_path, bytes_keys=bytes_keys)
    assert cifar_missing("cifar10", tmp_path) is None
    x_tr, y_tr, x_te, y_te, n_classes = load_cifar("cifar10", tmp_path)
    assert n_classes == 10
    assert x_tr.shape == (15, 3, 32, 32) and x_te.shape == (4, 3, 32, 32)
    assert x_tr.dtype == x_te.dtype == torch.uint8 and y_tr.dtype == y_te.dtype == torch.int64
    assert y_tr.tolist() == tr_lb.tolist() and y_te.tolist() == [9, 0, 3, 7]  # batch order 1..5 kept
    assert torch.equal(x_tr, _chw(tr_im)) and torch.equal(x_te, _chw(te_im))
    # channel order: x[n, 0] is the red plane, i.e. the first 1024 bytes of the row, row-major
    assert x_tr[7, 0, 2, 5] == tr_im[7, 2, 5, 0] and x_tr[7, 2, 31, 0] == tr_im[7, 31, 0, 2]
    assert class_names("cifar10", tmp_path)[9] == "truck"


def test_cifar100_folder_uses_fine_labels(tmp_path):
    tr_im, tr_fine, te_im, te_fine = _fake_cifar100(tmp_path)
    x_tr, y_tr, x_te, y_te, n_classes = load_cifar("cifar100", tmp_path)
    assert n_classes == 100
    assert x_tr.shape == (6, 3, 32, 32) and x_te.shape == (5, 3, 32, 32) and x_tr.dtype == torch.uint8
    assert y_tr.tolist() == tr_fine.tolist() and y_te.tolist() == te_fine.tolist() and y_tr.dtype == torch.int64
    assert torch.equal(x_tr, _chw(tr_im)) and torch.equal(x_te, _chw(te_im))
    assert class_names("cifar100", tmp_path)[99] == "c99"


def test_reader_matches_torchvision_parse_when_md5_check_is_bypassed(tmp_path, monkeypatch):
    """Our reader gives the same arrays as torchvision's CIFAR10/100 (whose md5 check rejects fake files)."""
    import torchvision.datasets.cifar as tv_cifar

    _fake_cifar10(tmp_path, bytes_keys=False)  # torchvision reads str keys only (as latin1 gives them)
    _fake_cifar100(tmp_path, bytes_keys=False)
    with pytest.raises(RuntimeError):
        tv_cifar.CIFAR10(str(tmp_path), train=True, download=False)  # md5 differs: why we read ourselves
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    for name, cls in (("cifar10", tv_cifar.CIFAR10), ("cifar100", tv_cifar.CIFAR100)):
        x_tr, y_tr, x_te, y_te, _ = load_cifar(name, tmp_path)
        for train, x, y in ((True, x_tr, y_tr), (False, x_te, y_te)):
            ds = cls(str(tmp_path), train=train, download=False)
            assert torch.equal(x.permute(0, 2, 3, 1), torch.from_numpy(ds.data))  # torchvision keeps HWC
            assert y.tolist() == list(ds.targets)


def test_verify_md5_rejects_fake_files(tmp_path):
    _fake_cifar10(tmp_path)
    with pytest.raises(ValueError, match="md5"):
        load_cifar("cifar10", tmp_path, verify_md5=True)


def test_missing_folder_message_names_folder_files_and_npz_option(tmp_path):
    msg = cifar_missing("cifar10", tmp_path)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "data_batch_1" in msg and "test_batch" in msg
    assert "cifar-10-python.tar.gz" in msg and "npz" in msg
    msg = cifar_missing("cifar100", tmp_path)
    assert str(tmp_path / "cifar-100-python") in msg and "train" in msg and "npz" in msg
    with pytest.raises(DataMissingError, match="cifar-100-python"):
        load_cifar("cifar100", tmp_path)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"x")
    assert "tar xzf" in cifar_missing("cifar10", tmp_path)


def test_partly_missing_folder_lists_only_the_missing_files(tmp_path):
    _fake_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    msg = cifar_missing("cifar10", tmp_path)
    assert "data_batch_3" in msg and "data_batch_2" not in msg
    with pytest.raises(DataMissingError, match="data_batch_3"):
        load_cifar("cifar10", tmp_path)


def test_unknown_name_lists_valid_names(tmp_path):
    with pytest.raises(ValueError, match="cifar10, cifar100, npz"):
        load_cifar("cifar11", tmp_path)


def test_npz_round_trip_and_messages(tmp_path):
    rng = np.random.default_rng(2)
    x_train, x_test = rng.integers(0, 256, (7, 32, 32, 3), dtype=np.uint8), rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    y_train, y_test = np.array([0, 1, 2, 3, 4, 5, 6], np.uint8), np.array([2, 2, 1], np.uint8)
    path = tmp_path / "c.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    assert cifar_missing("npz", path) is None
    xa, ya, xb, yb, n_classes = load_cifar("npz", path)
    assert n_classes == 7  # no classes array: max label + 1
    assert xa.shape == (7, 3, 32, 32) and xa.dtype == torch.uint8 and ya.dtype == torch.int64
    assert torch.equal(xa, _chw(x_train)) and torch.equal(xb, _chw(x_test))
    assert xa[4, 1, 3, 30] == x_train[4, 3, 30, 1]  # channel moved first, not scrambled
    assert ya.tolist() == y_train.tolist() and yb.tolist() == [2, 2, 1]
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test, classes=np.array([f"k{i}" for i in range(10)]))
    assert load_cifar("npz", path)[4] == 10
    assert "not a file" in cifar_missing("npz", tmp_path / "nope.npz")
    np.savez(tmp_path / "bad.npz", x_train=x_train, y_train=y_train)
    assert "x_test, y_test" in cifar_missing("npz", tmp_path / "bad.npz")
    with pytest.raises(DataMissingError, match="nope.npz"):
        load_cifar("npz", tmp_path / "nope.npz")


def test_read_cifar_batch_rejects_other_pickles(tmp_path):
    _dump(tmp_path / "x", {"foo": 1})
    with pytest.raises(ValueError, match="not a CIFAR batch"):
        read_cifar_batch(tmp_path / "x")


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_normalize_matches_formula(name):
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = cifar_stats(name)
    expected = (x.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    out = normalize(x, name)
    assert out.dtype == torch.float32 and out.device == x.device
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    assert cifar_stats("npz") == cifar_stats("cifar10")


@pytest.mark.skipif(not SHARED_NPZ.is_file(), reason="../shared/data CIFAR-10 subset not present")
def test_shared_cifar10_subset_if_present():
    x_tr, y_tr, x_te, y_te, n_classes = load_cifar("npz", SHARED_NPZ)
    assert n_classes == 10 and x_tr.shape == (10000, 3, 32, 32) and x_te.shape == (10000, 3, 32, 32)
    assert torch.bincount(y_te, minlength=10).tolist() == [1000] * 10
    z = normalize(x_tr)  # the CIFAR-10 constants standardise the subset per channel
    assert z.mean(dim=(0, 2, 3)).abs().max() < 0.05 and (z.std(dim=(0, 2, 3)) - 1).abs().max() < 0.05
    assert class_names("npz", SHARED_NPZ)[0] == "airplane"


def _npz(path, **arrays):
    """An .npz of 12 training and 4 test HWC uint8 images with labels 0..3, ``arrays`` replacing some."""
    rng = np.random.default_rng(3)
    base = {"x_train": rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8), "y_train": np.arange(12) % 4,
            "x_test": rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8), "y_test": np.array([3, 2, 1, 0])}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return base


def test_npz_chw_images_are_accepted_and_equal_their_hwc_copy(tmp_path):
    """CHW (N, 3, 32, 32) is unambiguous (only the channel axis has length 3): read as is, pixel for pixel."""
    hwc = _npz(tmp_path / "hwc.npz")
    _npz(tmp_path / "chw.npz", x_train=hwc["x_train"].transpose(0, 3, 1, 2), x_test=hwc["x_test"].transpose(0, 3, 1, 2))
    a, b = load_cifar("npz", tmp_path / "hwc.npz"), load_cifar("npz", tmp_path / "chw.npz")
    assert all(torch.equal(u, v) for u, v in zip(a[:4], b[:4])) and a[4] == b[4] == 4
    assert b[0][5, 2, 7, 30] == hwc["x_train"][5, 7, 30, 2]  # channel c of pixel (h, w) of image n
    # labels as Keras stores them, (N, 1), and as whole-number floats, read as the same int64 labels
    _npz(tmp_path / "col.npz", y_train=(np.arange(12) % 4).reshape(12, 1).astype(np.float32))
    assert load_cifar("npz", tmp_path / "col.npz")[1].tolist() == a[1].tolist()


NAN_IMAGES = np.zeros((12, 32, 32, 3), np.float32)
NAN_IMAGES[3, 1, 2, 0] = NAN_IMAGES[4, 0, 0, 1] = np.nan
BAD_NPZ = {
    "float pixels with NaN": ({"x_train": NAN_IMAGES}, "x_train is float32 (2 of its values NaN); valid: uint8 images "
                              "(N, 32, 32, 3) HWC or (N, 3, 32, 32) CHW, pixels 0..255"),
    "float pixels": ({"x_test": np.ones((4, 32, 32, 3))}, "x_test is float64; valid: uint8 images"),
    "wrong shape": ({"x_train": np.zeros((12, 32, 32), np.uint8)}, "x_train has shape (12, 32, 32); valid: uint8 images"),
    "64 px images": ({"x_test": np.zeros((4, 64, 64, 3), np.uint8)}, "x_test has shape (4, 64, 64, 3); valid:"),
    "label above the classes": ({"y_test": np.array([3, 2, 10, 0]), "classes": np.array([f"c{i}" for i in range(10)])},
                                "y_test holds label 10 but classes holds 10 names; valid: class indices 0..9"),
    "negative label": ({"y_train": np.arange(12) % 4 - 1}, "y_train holds label -1; valid: class indices 0..C-1"),
    "fractional labels": ({"y_train": np.arange(12) / 2}, "y_train holds 6 labels that are not whole numbers"),
    "string labels": ({"y_test": np.array(["a", "b", "c", "d"])}, "y_test is <U1; valid: integer class indices"),
    "one class": ({"y_train": np.zeros(12, int), "y_test": np.zeros(4, int)}, "hold class 0 only; valid: at least 2"),
    "empty test split": ({"x_test": np.zeros((0, 32, 32, 3), np.uint8), "y_test": np.zeros(0, int)},
                         "x_test holds no images; valid: at least one image per split"),
    "lengths differ": ({"y_train": np.arange(11) % 4}, "x_train has 12 images but y_train has 11 labels"),
    "labels of 2 dims": ({"y_train": np.zeros((12, 4), int)}, "y_train has shape (12, 4); valid: (N,) or (N, 1)"),
    "missing arrays": ({"x_test": None, "y_test": None}, "lacks arrays x_test, y_test"),
    "object array": ({"y_train": np.array([0, "a"] * 6, dtype=object)}, "x_train / y_train cannot be read"),
}


@pytest.mark.parametrize("case", list(BAD_NPZ))
def test_bad_npz_is_one_line_naming_the_array_and_what_is_valid(tmp_path, case):
    from lowbit_core.data.cifar import read_cifar_npz

    arrays, expected = BAD_NPZ[case]
    path = tmp_path / "bad.npz"
    _npz(path, **arrays)
    with pytest.raises((ValueError, DataMissingError)) as exc:
        read_cifar_npz(path)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and expected in msg, msg
    with pytest.raises(type(exc.value)):
        load_cifar("npz", path)  # the loader (in the trial) checks the same rules
