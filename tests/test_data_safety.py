"""No code runs from data files: a planted CIFAR pickle is refused before it is unpickled.

Each test writes a CIFAR folder in the real format (``tests.test_data`` writers), registers the
md5s of those tiny files as if they were the official release (``register_tiny_md5``, the
loader's test hook), then replaces one file with a pickle whose ``__reduce__`` creates a marker
file when unpickled. Loading must raise a one-line :class:`CorruptFileError` naming that file, and
the marker must not exist afterwards: nothing was unpickled.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phasezoo.cli import main
from phasezoo.data import load_dataset, torchvision_sets
from phasezoo.errors import CorruptFileError
from tests.test_data import register_tiny_md5, write_cifar10, write_cifar100

FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
WRITERS = {"cifar10": write_cifar10, "cifar100": write_cifar100}


class _Exploit:
    """Unpickling this creates ``marker`` (stands for any code an attacker would run)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').close()",)


def plant(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=2))


def cifar_with_plant(root: Path, monkeypatch, name: str, planted: str, marker: Path) -> Path:
    """Tiny real-format files, registered as official, then ``planted`` replaced by the exploit."""
    WRITERS[name](root, np.random.default_rng(0))
    register_tiny_md5(monkeypatch, root, name)
    target = root / name / FOLDERS[name] / planted
    plant(target, marker)
    return target


def test_the_planted_pickle_does_run_code_when_unpickled(tmp_path):
    """Guard for the tests below: an absent marker means nothing was unpickled, not a dud."""
    marker = tmp_path / "marker"
    plant(tmp_path / "data_batch_1", marker)
    with open(tmp_path / "data_batch_1", "rb") as f:
        pickle.load(f, encoding="latin1")  # what torchvision does
    assert marker.exists()


@pytest.mark.parametrize(("name", "planted"), [
    ("cifar10", "data_batch_1"), ("cifar10", "data_batch_5"), ("cifar10", "test_batch"),
    ("cifar10", "batches.meta"), ("cifar100", "train"), ("cifar100", "test"), ("cifar100", "meta"),
])
@pytest.mark.parametrize("download", [False, True])
def test_planted_pickle_is_refused_before_unpickling(tmp_path, monkeypatch, name, planted, download):
    marker = tmp_path / "marker"
    target = cifar_with_plant(tmp_path, monkeypatch, name, planted, marker)
    with pytest.raises(CorruptFileError) as err:
        load_dataset(name, tmp_path, download=download)
    msg = str(err.value)
    assert "\n" not in msg
    assert str(target) in msg and "md5" in msg and "official release" in msg and "pickle" in msg
    # only the planted file is named: the others match their (registered) md5
    assert msg.count(str(tmp_path / name / FOLDERS[name])) == 1
    assert not marker.exists()


def test_tiny_files_without_registered_md5_are_refused_too(tmp_path):
    """The real table: the tiny files are not the official bytes, so no file is opened."""
    marker = tmp_path / "marker"
    write_cifar10(tmp_path, np.random.default_rng(0))
    plant(tmp_path / "cifar10" / FOLDERS["cifar10"] / "data_batch_1", marker)
    with pytest.raises(CorruptFileError) as err:
        load_dataset("cifar10", tmp_path, download=False)
    msg = str(err.value)
    for rel in torchvision_sets._torchvision_md5_table("cifar10"):  # every file is named
        assert str(tmp_path / "cifar10" / rel) in msg
    assert not marker.exists()


def test_the_gate_compares_with_torchvisions_published_md5s():
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, cls in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        table = torchvision_sets._official_md5(name)
        expected = {f: md5 for f, md5 in cls.train_list + cls.test_list}
        expected[cls.meta["filename"]] = cls.meta["md5"]
        assert table == {f"{cls.base_folder}/{f}": md5 for f, md5 in expected.items()}
        assert all(len(md5) == 32 for md5 in table.values())


def test_a_downloaded_file_goes_through_the_same_gate(tmp_path, monkeypatch):
    """A missing file triggers the download; what the download leaves is checked before use."""
    marker = tmp_path / "marker"
    cifar_with_plant(tmp_path, monkeypatch, "cifar10", "data_batch_2", marker)
    folder = tmp_path / "cifar10" / FOLDERS["cifar10"]
    planted = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").unlink()
    calls = []

    def fake_download(url, download_root, filename=None, md5=None, **kwargs):
        calls.append((url, filename, md5))
        (folder / "data_batch_2").write_bytes(planted)  # as if the archive held the plant

    monkeypatch.setattr(torchvision_sets, "download_and_extract_archive", fake_download)
    with pytest.raises(CorruptFileError, match="data_batch_2"):
        load_dataset("cifar10", tmp_path, download=True)
    assert calls and calls[0][2] == "c58f30108f718f92721af3b95e74349a"  # archive md5 checked
    assert not marker.exists()


# --------------------------------------------------------------------------- command line

CIFAR10_SPEC = """\
name: tiny-cifar10
description: a tiny cifar10 zoo for the planted-pickle tests
arch: resnet18
dataset: cifar10
training:
  optimizer: sgd
  lr: 0.1
  momentum: 0.9
  weight_decay: 5.0e-4
  scheduler: {name: onecycle_cosine}
  epochs: 1
profiles:
  smoke:
    grid: {width: [1], batch_size: [256], seed: [0]}
"""


def write_cifar10_spec(tmp_path: Path) -> Path:
    path = tmp_path / "tiny-cifar10.yaml"
    path.write_text(CIFAR10_SPEC)
    return path


def test_cli_train_refuses_the_plant_with_one_line(tmp_path, monkeypatch, capsys):
    data = tmp_path / "datasets"
    marker = tmp_path / "marker"
    cifar_with_plant(data, monkeypatch, "cifar10", "data_batch_1", marker)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(write_cifar10_spec(tmp_path)), "-p", "smoke",
              "--root", str(tmp_path / "zoos"), "--data-dir", str(data), "--device", "cpu"])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "Traceback" not in err and "data_batch_1" in err
    assert not marker.exists()
    assert not (tmp_path / "zoos").exists()


def test_console_train_refuses_the_plant_without_any_test_hook(tmp_path):
    """A separate process (no monkeypatching at all) on a YAML spec that uses cifar10."""
    data = tmp_path / "datasets"
    marker = tmp_path / "marker"
    write_cifar10(data, np.random.default_rng(0))
    plant(data / "cifar10" / FOLDERS["cifar10"] / "data_batch_1", marker)
    spec = write_cifar10_spec(tmp_path)
    cmd = [sys.executable, "-c", "import torch; torch.set_num_threads(1); "
           "from phasezoo.cli import main; main()",
           "train", str(spec), "-p", "smoke", "--root", str(tmp_path / "zoos"),
           "--data-dir", str(data), "--device", "cpu"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "data_batch_1" in proc.stderr and "md5" in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "zoos").exists()


# --------------------------------------------------------------------------- Hugging Face datasets


@pytest.mark.parametrize("version", ["2.14.0", "2.19.1", "3.6.0", "unknown"])
def test_prepare_refuses_datasets_that_can_run_loading_scripts(tmp_path, monkeypatch, version):
    """datasets < 4.0 can execute a hub dataset's loading script: refused before any load."""
    import types

    from phasezoo.data import prepare_openwebtext as prepare
    from phasezoo.errors import PhaseZooError

    calls = []
    fake = types.ModuleType("datasets")
    fake.__version__ = version
    fake.load_dataset = lambda *a, **k: calls.append((a, k))
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(PhaseZooError, match=r"datasets>=4") as err:
        prepare.prepare_openwebtext(tmp_path / "owt", encode=prepare.byte_encoder())
    assert "\n" not in str(err.value) and "loading script" in str(err.value)
    assert not calls and not (tmp_path / "owt").exists()
