"""`phasezoo export --format hf`: Parquet shards read by Hugging Face datasets, the dataset card,
and Croissant 1.0 metadata read by mlcroissant; the rows against the store and the zoo table."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from phasezoo.analysis.table import zoo_table
from phasezoo.cli import main
from phasezoo.landscape.runner import compute_metrics
from phasezoo.publish.hf import export_hf
from phasezoo.wsl.features import forward_order
from phasezoo.zoo import Zoo, train_zoo
from tests.conftest import TINY_SPEC, write_spec

datasets = pytest.importorskip("datasets")
mlc = pytest.importorskip("mlcroissant")

# two cells x two seeds, checkpoints at 0, 2 and 3; metrics measured at epoch 2 only
SPEC = TINY_SPEC.replace("seed: [0]", "seed: [0, 1]") + """\
metrics:
  hessian: {num_batches: 2, batch_size: 32, max_iter: 20, tol: 1.0e-2, trace_max_iter: 30}
  cka: {batch_size: 64, num_batches: 3}
  mode_connectivity: {epochs: 1, batch_size: 256, min_steps: 0, plateau_tol: 10.0}
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    base = tmp_path_factory.mktemp("hf")
    z = Zoo.of(write_spec(base, SPEC), "smoke", base / "zoos")
    train_zoo(z, device="cpu", progress=False)
    compute_metrics(z, epoch=[2], device="cpu", progress=False)
    info = export_hf(z, to=base / "out", max_rows_per_shard=5)
    return z, base / "out", info


def _rows(folder):
    # a cache of its own: `datasets` keys its cache of a local folder by the folder's name, so a
    # shared cache could hand back another export's rows
    return datasets.load_dataset(str(folder), cache_dir=str(folder.parent / f".cache-{folder.name}"))["train"]


def test_one_row_per_member_and_checkpoint_in_shards(exported):
    z, out, info = exported
    assert info == {"members": 4, "rows": 12, "shards": 3, "bytes": info["bytes"]}
    shards = sorted(p.name for p in (out / "data").iterdir())
    assert shards == [f"train-{k:05d}-of-00003.parquet" for k in range(3)]
    ds = _rows(out)
    assert len(ds) == 12
    assert sorted(zip(ds["member"], ds["epoch"])) == sorted((m.member, e) for m in z.members for e in (0, 2, 3))
    for col in ("zoo", "cell", "seed", "status", "arch", "width", "batch_size", "lr", "config_json", "train_loss",
                "test_acc", "hessian_trace", "phase", "layer_names", "layer_kinds", "layer_shapes", "layer_weights"):
        assert col in ds.column_names, col
    assert json.loads(ds[0]["config_json"])["member"] == ds[0]["member"]


def test_results_and_metrics_are_the_tables_at_each_epoch(exported):
    z, out, _ = exported
    ds = _rows(out).to_pandas()
    for e in (0, 2, 3):
        table = zoo_table(z, epoch=e).set_index("member")
        for _, r in ds[ds["epoch"] == e].iterrows():
            assert r["train_loss"] == pytest.approx(table.loc[r["member"], "train_loss"], rel=1e-12)
            assert r["test_acc"] == pytest.approx(table.loc[r["member"], "test_acc"], rel=1e-12)
    measured = ds[ds["epoch"] == 2]
    assert measured["hessian_trace"].notna().all() and measured["phase"].notna().all()
    assert ds[ds["epoch"] != 2]["hessian_trace"].isna().all()  # not measured there: null, not zero
    assert ds[ds["epoch"] != 2]["phase"].isna().all()


def test_every_layer_unflattens_to_the_stored_tensor_in_forward_order(exported):
    z, out, _ = exported
    for row in _rows(out):
        _, state = z.store.member(row["member"]).load_checkpoint(row["epoch"])
        order = forward_order(z.store.member(row["member"]).read_config())
        floats = [n for n in order if state[n].is_floating_point()]
        assert row["layer_names"] == floats
        assert row["layer_kinds"] == [order[n] for n in floats]
        assert "bn1.running_mean" in floats and order["bn1.running_mean"] == "buffer"
        for name, shape, values in zip(row["layer_names"], row["layer_shapes"], row["layer_weights"]):
            got = torch.from_numpy(np.asarray(values, dtype=np.float32).reshape(shape))
            assert torch.equal(got, state[name].float()), name


def test_the_card_has_the_license_configs_and_citation(exported):
    _, out, _ = exported
    text = (out / "README.md").read_text()
    header = yaml.safe_load(text.split("---")[1])
    assert header["license"] == "cc-by-4.0"
    assert header["configs"][0]["data_files"][0]["path"] == "data/*.parquet"
    assert "weight-space-learning" in header["tags"]
    assert "@article{schurholt2025phasezoo" in text and "A Model Zoo on Phase Transitions in Neural Networks" in text
    assert "| `layer_weights` |" in text


def test_croissant_validates_and_reads_the_same_records(exported):
    _, out, _ = exported
    meta = json.loads((out / "croissant.json").read_text())
    assert meta["conformsTo"] == "http://mlcommons.org/croissant/1.0"
    assert meta["license"] == "https://creativecommons.org/licenses/by/4.0/"
    # each shard is listed with its sha256
    shas = {d["contentUrl"]: d["sha256"] for d in meta["distribution"] if d["@type"] == "cr:FileObject"}
    import hashlib

    for p in (out / "data").iterdir():
        assert shas[f"data/{p.name}"] == hashlib.sha256(p.read_bytes()).hexdigest()
    records = list(mlc.Dataset(jsonld=str(out / "croissant.json")).records(record_set="members"))
    ds = _rows(out).to_pandas().set_index(["member", "epoch"])
    assert len(records) == len(ds)
    for r in records:
        key = (r["members/member"].decode(), r["members/epoch"])
        row = ds.loc[key]
        assert r["members/train_loss"] == pytest.approx(row["train_loss"])
        assert [n.decode() for n in r["members/layer_names"]] == list(row["layer_names"])
        assert np.allclose(np.concatenate(r["members/layer_weights"]), np.concatenate(row["layer_weights"]))


def test_cli_export_and_bad_input(exported, tmp_path, capsys):
    z, _, _ = exported
    args = [str(z.spec.source), "-p", "smoke", "--root", str(z.root), "--format", "hf"]
    with pytest.raises(SystemExit) as e:
        main(["export", *args, "--to", str(tmp_path / "ok")])
    assert e.value.code == 0 and "exported 12 rows of 4 members" in capsys.readouterr().out
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep")
    for extra, why in ((["--to", str(tmp_path / "full")], "not an empty folder"),
                       (["--to", str(tmp_path / "n"), "--max-rows-per-shard", "0"], "at least 1")):
        with pytest.raises(SystemExit) as e:
            main(["export", *args, *extra])
        err = capsys.readouterr().err
        assert e.value.code == 2 and why in err and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x"] and not (tmp_path / "n").exists()
    untrained = write_spec(tmp_path, SPEC.replace("tiny-digits", "tiny-untrained"), "tiny-untrained.yaml")
    with pytest.raises(SystemExit) as e:
        main(["export", str(untrained), "-p", "smoke", "--root", str(tmp_path / "none"), "--format", "hf",
              "--to", str(tmp_path / "u")])
    assert e.value.code == 2 and not (tmp_path / "u").exists()


def test_a_corrupt_checkpoint_stops_the_export_before_anything_is_written(exported, tmp_path, capsys):
    z, _, _ = exported
    shutil.copytree(z.root, tmp_path / "zoos")
    ckpt = next((tmp_path / "zoos").rglob("epoch_0002.safetensors"), None) or \
        sorted((tmp_path / "zoos").rglob("*.safetensors"))[0]
    blob = bytearray(ckpt.read_bytes())
    blob[-5] ^= 0xFF
    ckpt.write_bytes(bytes(blob))
    with pytest.raises(SystemExit) as e:
        main(["export", str(z.spec.source), "-p", "smoke", "--root", str(tmp_path / "zoos"), "--format", "hf",
              "--to", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
