"""The training loop: resuming is exact, divergence is contained, results are complete."""

import json

import numpy as np
import pytest
import torch

from phasezoo import zoo as zoo_ops
from phasezoo.analysis.table import zoo_table
from phasezoo.spec import load_spec
from phasezoo.store import load_member, MemberStore
from phasezoo.tasks import ClassificationTask
from phasezoo.data import steps_per_epoch
from phasezoo.train import train_member


def _member(spec_path, index=0):
    return load_spec(spec_path).members("smoke")[index]


def _weights(member_dir, epoch):
    return MemberStore(member_dir).load_checkpoint(epoch)[1]


def test_results_have_one_line_per_epoch_and_a_line_zero(tiny_spec, tmp_path):
    m = _member(tiny_spec)
    res = train_member(m, tmp_path / "a")
    assert res.status == "done"
    rows = MemberStore(tmp_path / "a").read_results()
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    for r in rows:
        assert {"train_loss", "train_acc", "test_loss", "test_acc", "lr", "time_s"} <= set(r)
    assert rows[0]["lr"] == pytest.approx(0.1 / 25)  # OneCycle starts at max_lr / div_factor
    assert rows[-1]["lr"] == pytest.approx(0.1 / 25 / 1e4, rel=1e-6)  # and ends 1e4 lower still
    store = MemberStore(tmp_path / "a")
    assert store.checkpoint_epochs() == [0, 2, 3]
    assert not store.resume_path.exists()  # cleaned up once done
    assert store.read_status()["status"] == "done"


def test_resumed_run_equals_uninterrupted_run(tiny_spec, tmp_path):
    m = _member(tiny_spec)
    train_member(m, tmp_path / "full")
    first = train_member(m, tmp_path / "resumed", stop_after_epoch=1)
    assert first.status == "partial" and first.last_epoch == 1
    assert MemberStore(tmp_path / "resumed").state() == "partial"
    second = train_member(m, tmp_path / "resumed")
    assert second.status == "done" and second.epochs_run == 2
    for epoch in (0, 2, 3):
        a, b = _weights(tmp_path / "full", epoch), _weights(tmp_path / "resumed", epoch)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), k
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]
    assert strip(MemberStore(tmp_path / "full").read_results()) == strip(
        MemberStore(tmp_path / "resumed").read_results())


def test_crash_after_results_before_resume_state_records_each_epoch_once(tiny_spec, tmp_path):
    m = _member(tiny_spec)
    d = tmp_path / "crash"
    train_member(m, d, stop_after_epoch=1)
    store = MemberStore(d)
    rows = store.read_results()
    # a kill between writing epoch 2's results line and its resume state leaves this on disk:
    store.write_results(rows + [{**rows[-1], "epoch": 2}])
    train_member(m, d)
    assert [r["epoch"] for r in store.read_results()] == [0, 1, 2, 3]


def test_done_member_is_skipped(tiny_spec, tmp_path):
    m = _member(tiny_spec)
    train_member(m, tmp_path / "a")
    mtime = (tmp_path / "a" / "results.jsonl").stat().st_mtime_ns
    again = train_member(m, tmp_path / "a")
    assert again.epochs_run == 0 and again.status == "done"
    assert (tmp_path / "a" / "results.jsonl").stat().st_mtime_ns == mtime


def test_divergence_stops_the_member_and_the_zoo_carries_on(tiny_spec, tmp_path, monkeypatch):
    real_loss = ClassificationTask.loss

    def nan_for_batch_512(self, outputs, targets):
        loss = real_loss(self, outputs, targets)
        return loss * float("nan") if outputs.shape[0] == 512 else loss

    monkeypatch.setattr(ClassificationTask, "loss", nan_for_batch_512)
    results = zoo_ops.train_zoo(tiny_spec, "smoke", tmp_path / "zoo", device="cpu", progress=False)
    status = {r.member: r.status for r in results}
    assert status == {"w0001_b0256_s0": "done", "w0001_b0512_s0": "diverged"}
    assert zoo_ops.zoo_status(tiny_spec, "smoke", tmp_path / "zoo") == {
        "pending": 0, "partial": 0, "done": 1, "diverged": 1}
    store = MemberStore(tmp_path / "zoo" / "tiny-digits" / "smoke" / "w0001_b0512_s0")
    rows = store.read_results()
    assert [r["epoch"] for r in rows] == [0, 1]
    assert rows[-1]["train_loss_batches"] is None  # NaN stored as JSON null
    assert json.loads(store.status_path.read_text())["status"] == "diverged"
    # a rerun does not retry a diverged member
    again = zoo_ops.train_zoo(tiny_spec, "smoke", tmp_path / "zoo", device="cpu", progress=False)
    assert again == []


def test_the_batch_rule_is_one_rule():
    from phasezoo.data import train_batches
    from phasezoo.data.batches import MIN_TRAIN_BATCH
    from phasezoo.spec import MIN_BATCH_SIZE

    assert MIN_BATCH_SIZE == MIN_TRAIN_BATCH == 2
    x = torch.arange(17.0)[:, None]
    sizes = [len(b[1]) for b in train_batches(x, torch.arange(17), 8, generator=torch.Generator().manual_seed(0))]
    assert sizes == [8, 8] and len(sizes) == steps_per_epoch(17, 8)


def test_steps_per_epoch_drops_a_single_sample_tail():
    assert steps_per_epoch(1437, 8) == 180  # 179 full + a tail of 5
    assert steps_per_epoch(17, 8) == 2  # tail of 1 is dropped
    assert steps_per_epoch(16, 8) == 2


def test_table_and_load_member(tiny_spec, tmp_path):
    zoo_ops.train_zoo(tiny_spec, "smoke", tmp_path / "zoo", device="cpu", progress=False)
    df = zoo_table(tiny_spec, "smoke", tmp_path / "zoo")
    assert list(df["member"]) == ["w0001_b0256_s0", "w0001_b0512_s0"]
    assert (df["epoch"] == 3).all() and (df["status"] == "done").all()
    assert np.allclose(df["gen_gap"], df["train_acc"] - df["test_acc"], atol=1e-12)
    df0 = zoo_table(tiny_spec, "smoke", tmp_path / "zoo", epoch=0)
    assert (df0["epoch"] == 0).all()
    model, config = load_member(tmp_path / "zoo" / "tiny-digits" / "smoke" / "w0001_b0256_s0")
    assert config["width"] == 1 and not model.training
    from phasezoo.data import load_dataset
    from phasezoo.tasks import ClassificationTask as T

    data = load_dataset("digits")
    acc = T().evaluate(model, data.test_x, data.test_y)["accuracy"]
    assert acc == pytest.approx(df.loc[0, "test_acc"])  # the stored weights reproduce the table
