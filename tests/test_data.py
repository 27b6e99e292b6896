"""Dataset loading: digits, and every file-based dataset from tiny files in its real on-disk format.

No network: each test writes a few images in the exact format the real release uses (CIFAR
pickles with Python-2 ``str`` keys, SVHN MATLAB v5 files, STL-10 column-major binaries, Tiny
ImageNet JPEG folders) into ``tmp_path`` and loads them through ``load_dataset``.

The loader opens a CIFAR pickle only if its md5 is the official one (unpickling runs code), so a
test that loads tiny CIFAR files first registers their md5s with :func:`register_tiny_md5`
(the loader's one test hook, ``torchvision_sets._OFFICIAL_MD5``); the planted-pickle tests are
in ``test_data_safety.py``.
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from phasezoo.data import DATASETS, VisionData, load_dataset, resolve_data_dir, torchvision_sets
from phasezoo.data.digits import load_digits
from phasezoo.data.registry import clear_cache
from phasezoo.errors import CorruptFileError, DatasetNotFoundError, PhaseZooError

MD5_WARNING = pytest.mark.filterwarnings("ignore:dataset .*md5 mismatch:UserWarning")


# --------------------------------------------------------------------------- fake-file writers


class _Py2Str(bytes):
    """Marker: pickled as a Python 2 ``str`` (SHORT_BINSTRING), as in the real CIFAR files."""


class _Py2Pickler(pickle._Pickler):  # the pure-Python pickler, so we can add an opcode writer
    dispatch = dict(pickle._Pickler.dispatch)

    def _save_py2str(self, obj: _Py2Str) -> None:
        data = bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[_Py2Str] = _save_py2str


def write_cifar_pickle(path: Path, entries: dict) -> None:
    """A protocol-2 pickle whose dict keys/strings unpickle as b'...' with encoding='bytes'
    (the official loading recipe) and as str with encoding='latin1' (torchvision's)."""

    def conv(v):
        if isinstance(v, str):
            return _Py2Str(v.encode())
        if isinstance(v, list):
            return [conv(i) for i in v]
        return v

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        _Py2Pickler(f, protocol=2).dump({conv(k): conv(v) for k, v in entries.items()})


def register_tiny_md5(monkeypatch: pytest.MonkeyPatch, root: Path, name: str) -> None:
    """For this test only, accept the files now in ``root/name`` as the official release of
    ``name``: their md5s replace the published ones in the loader's table (its test hook)."""
    folder = root / name
    table = {rel: hashlib.md5((folder / rel).read_bytes()).hexdigest()
             for rel in torchvision_sets._OFFICIAL_MD5[name]}
    monkeypatch.setitem(torchvision_sets._OFFICIAL_MD5, name, table)


def random_images(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8)


def write_cifar10(root: Path, rng: np.random.Generator):
    folder = root / "cifar10" / "cifar-10-batches-py"
    train_imgs, train_labels = [], []
    for b in range(1, 6):
        imgs = random_images(rng, 2, 32)
        labels = [int(v) for v in rng.integers(0, 10, size=2)]
        write_cifar_pickle(
            folder / f"data_batch_{b}",
            {"batch_label": f"training batch {b} of 5", "labels": labels,
             "data": imgs.reshape(2, 3072), "filenames": [f"img{b}_{i}.png" for i in range(2)]},
        )
        train_imgs.append(imgs)
        train_labels += labels
    test_imgs, test_labels = random_images(rng, 3, 32), [9, 0, 4]
    write_cifar_pickle(
        folder / "test_batch",
        {"batch_label": "testing batch 1 of 1", "labels": test_labels,
         "data": test_imgs.reshape(3, 3072), "filenames": ["t0.png", "t1.png", "t2.png"]},
    )
    write_cifar_pickle(
        folder / "batches.meta",
        {"num_cases_per_batch": 2, "num_vis": 3072,
         "label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                         "ship", "truck"]},
    )
    return np.concatenate(train_imgs), train_labels, test_imgs, test_labels


def write_cifar100(root: Path, rng: np.random.Generator):
    folder = root / "cifar100" / "cifar-100-python"
    tr, te = random_images(rng, 4, 32), random_images(rng, 2, 32)
    tr_y, te_y = [0, 99, 42, 7], [99, 3]
    for name, imgs, fine in (("train", tr, tr_y), ("test", te, te_y)):
        write_cifar_pickle(
            folder / name,
            {"filenames": [f"{name}{i}.png" for i in range(len(fine))], "batch_label": name,
             "fine_labels": fine, "coarse_labels": [f // 5 for f in fine],
             "data": imgs.reshape(len(fine), 3072)},
        )
    write_cifar_pickle(
        folder / "meta",
        {"fine_label_names": [f"fine{i}" for i in range(100)],
         "coarse_label_names": [f"coarse{i}" for i in range(20)]},
    )
    return tr, tr_y, te, te_y


def write_svhn(root: Path, rng: np.random.Generator):
    folder = root / "svhn"
    folder.mkdir(parents=True)
    tr, te = random_images(rng, 3, 32), random_images(rng, 2, 32)
    tr_file_y, te_file_y = [10, 1, 9], [5, 10]  # SVHN files label digit 0 as 10
    for name, imgs, y in (("train", tr, tr_file_y), ("test", te, te_file_y)):
        scipy.io.savemat(
            folder / f"{name}_32x32.mat",
            # real layout: X is 32 x 32 x 3 x N (H, W, C, N), y is N x 1
            {"X": imgs.transpose(2, 3, 1, 0), "y": np.asarray(y, dtype=np.uint8).reshape(-1, 1)},
        )
    return tr, [0, 1, 9], te, [5, 0]


def write_stl10(root: Path, rng: np.random.Generator):
    folder = root / "stl10" / "stl10_binary"
    folder.mkdir(parents=True)
    tr, te = random_images(rng, 2, 96), random_images(rng, 3, 96)
    tr_file_y, te_file_y = [1, 10], [3, 10, 1]  # STL-10 files hold labels 1..10
    for name, imgs, y in (("train", tr, tr_file_y), ("test", te, te_file_y)):
        # real layout: each channel stored column-major, i.e. (N, C, W, H) in C order
        (folder / f"{name}_X.bin").write_bytes(imgs.transpose(0, 1, 3, 2).tobytes())
        (folder / f"{name}_y.bin").write_bytes(np.asarray(y, dtype=np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")
    return tr, [0, 9], te, [2, 9, 0]


def check_loaded(data: VisionData, name: str, tr, tr_y, te, te_y, num_classes: int) -> None:
    """Shapes, labels, and every pixel back after un-normalising (so layout/transposes are right)."""
    assert data.name == name
    assert data.train_x.shape == tr.shape and data.test_x.shape == te.shape
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert data.train_y.tolist() == list(tr_y) and data.test_y.tolist() == list(te_y)
    assert (data.num_classes, data.in_channels, data.image_size) == (num_classes, 3, tr.shape[-1])
    assert (data.num_train, data.num_test) == (len(tr), len(te))
    torch.testing.assert_close(data.unnormalise(data.train_x), torch.from_numpy(tr / 255.0).float())
    torch.testing.assert_close(data.unnormalise(data.test_x), torch.from_numpy(te / 255.0).float())
    # train statistics: normalised train split has per-channel mean 0, std 1
    std, mean = torch.std_mean(data.train_x, dim=(0, 2, 3), correction=0)
    torch.testing.assert_close(mean, torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(std, torch.ones(3), atol=1e-4, rtol=0)
    expected_mean = (tr / 255.0).mean(axis=(0, 2, 3))
    np.testing.assert_allclose(data.mean, expected_mean, rtol=1e-5)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_split_and_normalisation():
    data = load_dataset("digits")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    assert data.train_y.shape == (1437,) and data.test_y.shape == (360,)
    assert data.train_x.dtype == torch.float32 and data.train_y.dtype == torch.int64
    assert (data.num_classes, data.in_channels, data.image_size) == (10, 1, 8)
    assert set(data.train_y.tolist()) == set(range(10))
    counts = torch.bincount(data.test_y, minlength=10)
    assert ((counts - 36).abs() <= 1).all(), counts  # stratified: 360 / 10 per class
    std, mean = torch.std_mean(data.train_x, dim=(0, 2, 3), correction=0)
    assert abs(float(mean)) < 1e-5 and abs(float(std) - 1) < 1e-5
    # source values are 0..16 / 16: un-normalised pixels are multiples of 1/16 in [0, 1]
    raw = data.unnormalise(data.test_x) * 16
    torch.testing.assert_close(raw, raw.round(), atol=1e-4, rtol=0)
    assert float(raw.min()) > -1e-4 and float(raw.max()) < 16 + 1e-4


def test_digits_deterministic_and_cached():
    a, b = load_digits(), load_digits()  # two independent loads, no cache involved
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert a.mean == b.mean and a.std == b.std
    clear_cache()
    first = load_dataset("digits")
    assert load_dataset("digits") is first  # in-process cache: one load per zoo
    assert torch.equal(first.train_x, a.train_x)


def test_visiondata_to_and_info():
    data = load_dataset("digits")
    moved = data.to("cpu")
    assert moved.train_x.device.type == "cpu" and moved.num_train == 1437 and moved.num_test == 360
    info = DATASETS["digits"]
    assert (info.num_classes, info.in_channels, info.image_size, info.num_train) == (10, 1, 8, 1437)
    expected_train = {"digits": 1437, "cifar10": 50000, "cifar100": 50000, "svhn": 73257,
                      "stl10": 5000, "tinyimagenet": 100000, "stdlib-text": 3686,
                      "openwebtext": 2236328, "convection": 1356}
    assert {k: v.num_train for k, v in DATASETS.items()} == expected_train
    assert all(v.description and "\n" not in v.description for v in DATASETS.values())


def test_unknown_name_lists_valid_names():
    with pytest.raises(PhaseZooError) as err:
        load_dataset("mnist")
    msg = str(err.value)
    assert "\n" not in msg and "mnist" in msg
    assert all(name in msg for name in DATASETS)


def test_resolve_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("PHASEZOO_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir(None) == tmp_path / "env"
    monkeypatch.delenv("PHASEZOO_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "phasezoo" / "datasets"


# --------------------------------------------------------------------------- torchvision sets


def test_fake_cifar_pickle_matches_official_recipe(tmp_path):
    """Guard for the writer itself: keys are b'data'/b'labels' under encoding='bytes'."""
    write_cifar10(tmp_path, np.random.default_rng(0))
    with open(tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_1", "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    assert {b"data", b"labels", b"batch_label", b"filenames"} == set(entry)
    assert entry[b"data"].dtype == np.uint8 and entry[b"data"].shape == (2, 3072)


@pytest.mark.parametrize(
    ("name", "writer", "num_classes"),
    [("cifar10", write_cifar10, 10), ("cifar100", write_cifar100, 100),
     ("svhn", write_svhn, 10), ("stl10", write_stl10, 10)],
)
def test_torchvision_sets_from_real_format(tmp_path, monkeypatch, name, writer, num_classes):
    tr, tr_y, te, te_y = writer(tmp_path, np.random.default_rng(1))
    if name.startswith("cifar"):
        # pickles: opened only with the official md5, so the tiny files' md5s are registered
        register_tiny_md5(monkeypatch, tmp_path, name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no md5 warning: the registered md5s match
            data = load_dataset(name, tmp_path, download=False)
    else:
        # no pickle: tiny files are not the official bytes, loaded with an md5 warning naming them
        with pytest.warns(UserWarning, match="md5 mismatch") as record:
            data = load_dataset(name, tmp_path, download=False)
        first = EXPECTED_HINTS[name]
        assert any(first in str(w.message) for w in record)
    check_loaded(data, name, tr, tr_y, te, te_y, num_classes)


@MD5_WARNING
def test_svhn_and_stl10_label_conventions(tmp_path):
    # written: SVHN 10 (= digit 0) -> 0; STL-10 1..10 -> 0..9
    write_svhn(tmp_path, np.random.default_rng(2))
    write_stl10(tmp_path, np.random.default_rng(3))
    assert load_dataset("svhn", tmp_path, download=False).train_y.tolist() == [0, 1, 9]
    assert load_dataset("stl10", tmp_path, download=False).test_y.tolist() == [2, 9, 0]


def _assert_not_found(err: pytest.ExceptionInfo, folder: Path, *hints: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(folder) in msg
    assert "--data-dir" in msg and "PHASEZOO_DATA" in msg
    for hint in hints:
        assert hint in msg
    return msg


EXPECTED_HINTS = {
    "cifar10": "cifar-10-batches-py",
    "cifar100": "cifar-100-python",
    "svhn": "train_32x32.mat",
    "stl10": "stl10_binary",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_HINTS))
def test_missing_files_without_download(tmp_path, name):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, tmp_path, download=False)
    _assert_not_found(err, tmp_path / name, EXPECTED_HINTS[name], name)


@pytest.mark.parametrize("name", sorted(EXPECTED_HINTS))
def test_missing_files_download_fails_fast(tmp_path, monkeypatch, name):
    """download=True goes through torchvision's real download code until the network call,
    which is made to fail at once (as it does offline) instead of waiting on a timeout."""
    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise urllib.error.URLError("network disabled in tests")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    start = time.monotonic()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset(name, tmp_path, download=True)
    assert time.monotonic() - start < 5
    assert calls, "a download should have been attempted"
    msg = _assert_not_found(err, tmp_path / name, EXPECTED_HINTS[name])
    assert "download failed" in msg and "URLError" in msg
    assert err.value.__cause__ is not None  # original exception kept for debugging


@MD5_WARNING
def test_present_files_are_not_redownloaded(tmp_path, monkeypatch):
    write_svhn(tmp_path, np.random.default_rng(4))

    def no_network(*args, **kwargs):
        raise AssertionError("must not download when the files are present")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert load_dataset("svhn", tmp_path, download=True).num_train == 3


def test_env_var_selects_root(tmp_path, monkeypatch):
    monkeypatch.setenv("PHASEZOO_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar100", download=False)
    _assert_not_found(err, tmp_path / "cifar100")


def test_truncated_file_is_corrupt_not_traceback(tmp_path, monkeypatch):
    write_cifar10(tmp_path, np.random.default_rng(5))
    batch = tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])
    # registered after truncating: the md5 gate passes, so this exercises a failing parse
    register_tiny_md5(monkeypatch, tmp_path, "cifar10")
    with pytest.raises(CorruptFileError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "cifar10") in msg and "could not be read" in msg


# --------------------------------------------------------------------------- tiny imagenet

# wnids.txt deliberately not sorted: class index follows sorted(wnids) -> n01000000 is 0
TINY_COLOURS = {"n02000000": [(200, 10, 10), (190, 20, 30)], "n01000000": [(10, 200, 10), (128, 128, 128)]}


def write_tinyimagenet(root: Path) -> Path:
    folder = root / "tinyimagenet" / "tiny-imagenet-200"
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("n02000000\nn01000000\n")
    for wnid, colours in TINY_COLOURS.items():
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for i, colour in enumerate(colours):
            Image.new("RGB", (64, 64), colour).save(images / f"{wnid}_{i}.JPEG")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    val = folder / "val" / "images"
    val.mkdir(parents=True)
    Image.new("RGB", (64, 64), (0, 0, 250)).save(val / "val_0.JPEG")
    Image.new("L", (64, 64), 77).save(val / "val_1.JPEG")  # greyscale JPEG, as some real ones are
    (folder / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn02000000\t0\t0\t63\t63\nval_1.JPEG\tn01000000\t5\t5\t60\t60\n"
    )
    return folder


def test_tinyimagenet_from_real_layout(tmp_path):
    write_tinyimagenet(tmp_path)
    data = load_dataset("tinyimagenet", tmp_path)
    assert data.train_x.shape == (4, 3, 64, 64) and data.test_x.shape == (2, 3, 64, 64)
    assert (data.num_classes, data.in_channels, data.image_size) == (2, 3, 64)
    # train order: classes sorted, files sorted within a class
    assert data.train_y.tolist() == [0, 0, 1, 1] and data.test_y.tolist() == [1, 0]
    expected_train = TINY_COLOURS["n01000000"] + TINY_COLOURS["n02000000"]
    expected_test = [(0, 0, 250), (77, 77, 77)]
    for x, colours in ((data.train_x, expected_train), (data.test_x, expected_test)):
        pixels = data.unnormalise(x) * 255  # solid images: JPEG keeps them within a few levels
        want = torch.tensor(colours, dtype=torch.float32)[:, :, None, None].expand_as(pixels)
        assert (pixels - want).abs().max() < 4


def test_tinyimagenet_missing(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("tinyimagenet", tmp_path)  # download=True: there is none, same error
    _assert_not_found(err, tmp_path / "tinyimagenet" / "tiny-imagenet-200", "wnids.txt")


def test_tinyimagenet_missing_val_image(tmp_path):
    folder = write_tinyimagenet(tmp_path)
    (folder / "val" / "images" / "val_1.JPEG").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("tinyimagenet", tmp_path)
    _assert_not_found(err, folder, "val_1.JPEG")


def test_tinyimagenet_wrong_image_size_is_corrupt(tmp_path):
    folder = write_tinyimagenet(tmp_path)
    Image.new("RGB", (32, 32)).save(folder / "train" / "n01000000" / "images" / "n01000000_0.JPEG")
    with pytest.raises(CorruptFileError, match="64x64"):
        load_dataset("tinyimagenet", tmp_path)
