"""CIFAR-10 / CIFAR-100 from torchvision's on-disk format, or from an ``.npz`` (never downloaded here).

Folders (what ``torchvision.datasets.CIFAR10/CIFAR100(root, download=False)`` read):

- CIFAR-10: ``<root>/cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
  (``batches.meta`` holds the class names and is optional here);
- CIFAR-100: ``<root>/cifar-100-python/`` with ``train`` and ``test`` (``meta`` optional; fine labels).

Each batch file is a pickled dict with ``data``: uint8 ``(N, 3072)``, one row per image laid out as
1024 red, 1024 green, 1024 blue values, each plane row-major 32x32, and ``labels`` (CIFAR-10) or
``fine_labels`` (CIFAR-100): a list of ints. The keys are ``str`` in the original Python-2 pickles
read with ``encoding="latin1"``, ``bytes`` when written by Python 3 with bytes keys; both are accepted.

The files are read by :func:`read_cifar_batch`, our own reader that parses them exactly as
torchvision's ``CIFAR10.__init__`` does (``pickle.load(f, encoding="latin1")``, ``np.vstack`` of the
``data`` arrays, ``labels`` else ``fine_labels``), not through torchvision's class: torchvision
refuses any file whose md5 differs from the official archive's (``_check_integrity``), which rules
out subsets and the small fake folders the tests write. ``verify_md5=True`` restores that check
against torchvision's own md5 table.

``.npz`` option: arrays ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``classes``,
the class names). Rules, checked by :func:`read_cifar_npz` (the driver's preflight runs it before Ray
starts, the loader runs it again), each failure one line naming the array and what is valid:

- images: uint8 pixels 0..255, either HWC ``(N, 32, 32, 3)`` (as
  ``../shared/data/cifar10/cifar10-train10k-test10k.npz`` has them) or CHW ``(N, 3, 32, 32)`` (as
  PyTorch keeps them). CHW is accepted because the layout is unambiguous: the channel axis is the
  only one of length 3. Any other dtype is refused, floats included (their scale, 0..1 or 0..255,
  cannot be told from the data; the message counts NaNs);
- labels: ``(N,)`` or ``(N, 1)`` integer class indices (integral floats are accepted), as many as
  the split's images, in ``0 .. C-1`` with ``C = len(classes)`` when stored, else ``C = max + 1``
  over both splits, and ``C >= 2``;
- both splits hold at least one image (an empty test split has no accuracy).

Everything is returned as uint8 images ``(N, 3, 32, 32)`` (CHW, RGB) and int64 labels, to be
augmented and normalised in batches on the model's device (:mod:`lowbit_core.data.augment`,
:func:`normalize`).
"""
from __future__ import annotations

import functools

import pickle
from pathlib import Path

import numpy as np
import torch

from .mnist import DataMissingError

__all__ = [
    "DataMissingError", "NAMES", "FOLDERS", "MEAN", "STD", "cifar_stats", "normalize", "cifar_missing",
    "read_cifar_batch", "class_names", "load_cifar_folder", "read_cifar_npz", "load_cifar_npz", "load_cifar",
]

NAMES = ("cifar10", "cifar100", "npz")
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
ARCHIVES = {"cifar10": "cifar-10-python.tar.gz", "cifar100": "cifar-100-python.tar.gz"}
TRAIN_FILES = {"cifar10": tuple(f"data_batch_{i}" for i in range(1, 6)), "cifar100": ("train",)}
TEST_FILES = {"cifar10": ("test_batch",), "cifar100": ("test",)}
META_FILES = {"cifar10": ("batches.meta", "label_names"), "cifar100": ("meta", "fine_label_names")}
N_CLASSES = {"cifar10": 10, "cifar100": 100}
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

# Per-channel (R, G, B) mean and std of the training set's pixels scaled to [0, 1]. CIFAR-10's std is
# the per-pixel std over the 50k training images (0.2470, 0.2435, 0.2616), not the often-copied
# (0.2023, 0.1994, 0.2010), which are averages of per-image stds.
MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


def _check_name(name: str, valid=NAMES) -> None:
    if name not in valid:
        raise ValueError(f"unknown CIFAR data set {name!r}; valid names: {', '.join(valid)}")


def cifar_stats(name: str = "cifar10") -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` per RGB channel on the [0, 1] scale; ``"npz"`` (the CIFAR-10 subset) uses CIFAR-10's."""
    _check_name(name)
    key = "cifar10" if name == "npz" else name
    return MEAN[key], STD[key]


@functools.lru_cache(maxsize=16)
def _affine(name: str, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`normalize`'s per-channel ``(scale, shift)``, made once per device: building them every
    call copied two small tensors to the GPU, a synchronisation per training step."""
    mean, std = cifar_stats(name)
    # fold /255 into the affine map: y = x * (1 / (255 std)) - mean / std, per channel
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], dtype=dtype, device=device).view(1, -1, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)], dtype=dtype, device=device).view(1, -1, 1, 1)
    return scale, shift


def normalize(x: torch.Tensor, name: str = "cifar10", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(x / 255 - mean) / std`` per channel, in ``dtype`` on ``x``'s device; ``x`` is uint8 ``(N, 3, H, W)``.

    A float ``x`` is taken to be on the 0..255 scale too (e.g. a mixup of uint8 images).
    """
    scale, shift = _affine(name, dtype, x.device)
    return x.to(dtype, copy=True).mul_(scale).sub_(shift)  # in place on a fresh copy: ~3x faster than addcmul


def cifar_missing(name: str, root: str | Path) -> str | None:
    """None when the data set ``name`` is readable under ``root``, else a message saying what to put where.

    For ``"cifar10"``/``"cifar100"`` ``root`` is the folder holding ``cifar-10-batches-py/`` /
    ``cifar-100-python/``; for ``"npz"`` it is the ``.npz`` file. Nothing is ever downloaded.
    """
    _check_name(name)
    root = Path(root)
    npz_hint = ("or use data name 'npz' with root = an .npz holding x_train, y_train, x_test, y_test "
                "(uint8 images (N, 32, 32, 3) or (N, 3, 32, 32))")
    if name == "npz":
        if not root.is_file():
            return (f"CIFAR .npz not found: {root} is not a file; put an .npz with arrays x_train, y_train, "
                    f"x_test, y_test (uint8 images (N, 32, 32, 3) or (N, 3, 32, 32)) there, or set data.root to its path")
        try:
            with np.load(root) as z:
                lacking = [k for k in NPZ_KEYS if k not in z.files]
        except Exception as e:  # not a zip / unreadable
            return f"CIFAR .npz {root} could not be read ({type(e).__name__}: {e})"
        if lacking:
            return f"CIFAR .npz {root} lacks arrays {', '.join(lacking)} (needs {', '.join(NPZ_KEYS)})"
        return None
    folder = root / FOLDERS[name]
    needed = TRAIN_FILES[name] + TEST_FILES[name]
    missing = [f for f in needed if not (folder / f).is_file()]
    if not missing:
        return None
    archive = root / ARCHIVES[name]
    if archive.is_file() and not folder.exists():
        return (f"{name.upper()} in {archive} is still packed; run `tar xzf {archive} -C {root}` "
                f"(it unpacks to {folder}/)")
    return (f"{name.upper()} not found: {folder}/ lacks {', '.join(missing)}; download {ARCHIVES[name]} "
            f"(python version) from {URL} and unpack it in {root}/ (`tar xzf {ARCHIVES[name]} -C {root}` "
            f"makes {folder}/), or set data.root to the folder that holds {FOLDERS[name]}/; {npz_hint}")


def _get(entry: dict, key: str):
    if key in entry:
        return entry[key]
    return entry.get(key.encode())


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled CIFAR batch file -> ``(data uint8 (N, 3072), labels int64 (N,))``, as torchvision parses it."""
    with open(path, "rb") as f:
        entry = pickle.load(f, encoding="latin1")
    data = _get(entry, "data")
    labels = _get(entry, "labels")
    if labels is None:
        labels = _get(entry, "fine_labels")
    if data is None or labels is None:
        keys = ", ".join(map(repr, entry))
        raise ValueError(f"{path}: not a CIFAR batch file (keys {keys}; expected data and labels or fine_labels)")
    data = np.asarray(data, dtype=np.uint8).reshape(len(labels), 3 * 32 * 32)
    return data, np.asarray(labels, dtype=np.int64)


def _read_files(folder: Path, files) -> tuple[torch.Tensor, torch.Tensor]:
    parts = [read_cifar_batch(folder / f) for f in files]
    data = np.vstack([p[0] for p in parts]).reshape(-1, 3, 32, 32)  # rows are R plane, G plane, B plane
    labels = np.concatenate([p[1] for p in parts])
    return torch.from_numpy(np.ascontiguousarray(data)), torch.from_numpy(labels)


def _verify(name: str, folder: Path) -> None:
    from torchvision.datasets import CIFAR10, CIFAR100
    from torchvision.datasets.utils import check_integrity

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    bad = [f for f, md5 in cls.train_list + cls.test_list if not check_integrity(str(folder / f), md5)]
    if bad:
        raise ValueError(f"{folder}: md5 differs from the official {ARCHIVES[name]} for {', '.join(bad)}")


def load_cifar_folder(name: str, root: str | Path, verify_md5: bool = False):
    """``(x_train, y_train, x_test, y_test)`` from ``<root>/cifar-10-batches-py`` or ``<root>/cifar-100-python``.

    Images uint8 ``(N, 3, 32, 32)``, labels int64 (CIFAR-100: the fine labels). Raises
    :class:`DataMissingError` (message from :func:`cifar_missing`) when files are absent.
    """
    _check_name(name, ("cifar10", "cifar100"))
    message = cifar_missing(name, root)
    if message:
        raise DataMissingError(message)
    folder = Path(root) / FOLDERS[name]
    if verify_md5:
        _verify(name, folder)
    x_train, y_train = _read_files(folder, TRAIN_FILES[name])
    x_test, y_test = _read_files(folder, TEST_FILES[name])
    return x_train, y_train, x_test, y_test


def class_names(name: str, root: str | Path) -> list[str] | None:
    """The class names from ``batches.meta`` / ``meta`` (or the npz's ``classes``), None when absent."""
    _check_name(name)
    if name == "npz":
        with np.load(root) as z:
            return [str(c) for c in z["classes"]] if "classes" in z.files else None
    fname, key = META_FILES[name]
    path = Path(root) / FOLDERS[name] / fname
    if not path.is_file():
        return None
    with open(path, "rb") as f:
        meta = pickle.load(f, encoding="latin1")
    names = _get(meta, key)
    return None if names is None else [n.decode() if isinstance(n, bytes) else str(n) for n in names]


NPZ_IMAGES = "uint8 images (N, 32, 32, 3) HWC or (N, 3, 32, 32) CHW, pixels 0..255"


def _npz_images(x: np.ndarray, key: str, path) -> np.ndarray:
    """``x`` as uint8 CHW ``(N, 3, 32, 32)`` (module docstring's rules), or ValueError naming ``key``."""
    if x.ndim == 4 and x.shape[1:] == (32, 32, 3):
        chw = False
    elif x.ndim == 4 and x.shape[1:] == (3, 32, 32):
        chw = True
    else:
        raise ValueError(f"{path}: {key} has shape {x.shape}; valid: {NPZ_IMAGES}")
    if x.dtype != np.uint8:
        nan = int(np.isnan(x).sum()) if np.issubdtype(x.dtype, np.floating) else 0
        has = f" ({nan} of its values NaN)" if nan else ""
        raise ValueError(f"{path}: {key} is {x.dtype}{has}; valid: {NPZ_IMAGES} (floats are refused: 0..1 or "
                         f"0..255 cannot be told apart)")
    if len(x) == 0:
        raise ValueError(f"{path}: {key} holds no images; valid: at least one image per split")
    return np.ascontiguousarray(x if chw else x.transpose(0, 3, 1, 2))


def _npz_labels(y: np.ndarray, key: str, path, n_images: int) -> np.ndarray:
    """``y`` as int64 ``(N,)`` (module docstring's rules; the range is checked by the caller)."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{path}: {key} has shape {y.shape}; valid: (N,) or (N, 1) integer class indices")
    if np.issubdtype(y.dtype, np.floating):
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            raise ValueError(f"{path}: {key} holds {int(bad.sum())} labels that are not whole numbers (NaN, inf or "
                             f"fractions); valid: integer class indices 0..C-1")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise ValueError(f"{path}: {key} is {y.dtype}; valid: integer class indices 0..C-1")
    if len(y) != n_images:
        raise ValueError(f"{path}: x_{key[2:]} has {n_images} images but {key} has {len(y)} labels; valid: one label per image")
    y = y.astype(np.int64)
    if y.min() < 0:
        raise ValueError(f"{path}: {key} holds label {int(y.min())}; valid: class indices 0..C-1")
    return y


def read_cifar_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """``(x_train, y_train, x_test, y_test, n_classes)`` of an ``.npz`` checked by the module
    docstring's rules: images uint8 CHW ``(N, 3, 32, 32)`` numpy arrays, labels int64 ``(N,)``.
    Raises :class:`DataMissingError` (file or arrays absent) or ``ValueError``, each one line
    naming the file and the array."""
    message = cifar_missing("npz", path)
    if message:
        raise DataMissingError(message)
    out = []
    with np.load(path) as z:
        for split in ("train", "test"):
            try:
                x, y = np.asarray(z[f"x_{split}"]), np.asarray(z[f"y_{split}"])
            except Exception as e:  # object arrays (allow_pickle=False), a damaged member
                first = (str(e).strip().splitlines() or [""])[0]
                raise ValueError(f"{path}: x_{split} / y_{split} cannot be read ({type(e).__name__}: {first}); "
                                 f"valid: {NPZ_IMAGES} and integer labels") from None
            x = _npz_images(x, f"x_{split}", path)
            out += [x, _npz_labels(y, f"y_{split}", path, len(x))]
        try:
            names = [str(c) for c in z["classes"]] if "classes" in z.files else None
        except Exception as e:  # an object array of names (allow_pickle=False)
            raise ValueError(f"{path}: classes cannot be read ({type(e).__name__}); valid: an array of class "
                             f"names, e.g. np.array(['airplane', ...])") from None
    top = max(int(out[1].max()), int(out[3].max()))
    if names is not None:
        for key, y in (("y_train", out[1]), ("y_test", out[3])):
            if int(y.max()) >= len(names):
                raise ValueError(f"{path}: {key} holds label {int(y.max())} but classes holds {len(names)} names; "
                                 f"valid: class indices 0..{len(names) - 1}")
    n_classes = len(names) if names is not None else top + 1
    if n_classes < 2:
        raise ValueError(f"{path}: y_train and y_test hold class 0 only; valid: at least 2 classes (labels 0..C-1, "
                         f"or a classes array of C >= 2 names)")
    return (*out, n_classes)


def load_cifar_npz(path: str | Path):
    """``(x_train, y_train, x_test, y_test)`` from an ``.npz`` checked by :func:`read_cifar_npz`;
    images CHW uint8, labels int64, as tensors."""
    return tuple(torch.from_numpy(a) for a in read_cifar_npz(path)[:4])


def load_cifar(name: str, root: str | Path, verify_md5: bool = False):
    """``(x_train, y_train, x_test, y_test, n_classes)``; ``name`` in ``NAMES``.

    ``"cifar10"``/``"cifar100"``: ``root`` holds torchvision's folder; ``"npz"``: ``root`` is the ``.npz``
    path, checked by :func:`read_cifar_npz`, and ``n_classes`` is ``len(classes)`` when stored, else
    ``max(label) + 1``.
    Images uint8 ``(N, 3, 32, 32)`` on the CPU, labels int64.
    """
    _check_name(name)
    if name == "npz":
        *arrays, n_classes = read_cifar_npz(root)
        return (*(torch.from_numpy(a) for a in arrays), n_classes)
    return (*load_cifar_folder(name, root, verify_md5), N_CLASSES[name])
