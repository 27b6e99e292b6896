"""Training throughput: model-epochs per second on a zoo grid, ours against a plain baseline.

What it measures
    The same members of one zoo profile (default: ``digits-resnet18``, profile ``mini``) are
    trained twice, on the CPU, in one run:

    * **ours** -- through the package's real path, ``phasezoo.zoo.train_zoo`` into a temporary
      root with ``--workers`` processes (default 2). The wall clock covers the whole call:
      spawning the pool, each worker importing torch and loading the data, training, the
      per-epoch evaluation of the full train set (eval mode) and the test set, the results
      lines, checkpoints and resume states the store writes after every epoch.
    * **baseline** -- the textbook way: the same members one after another in this process, each
      with a ``torch.utils.data.DataLoader`` (``shuffle=True``, ``num_workers=0`` unless
      ``--loader-workers``) over a per-sample ``Dataset`` that applies per-sample
      ``torchvision.transforms.v2`` transforms (``RandomCrop(8, padding=p)`` [+ flip / rotation
      when the zoo's augmentation has them], then ``Normalize``) and collates the samples into
      batches. Same model and initialisation (``phasezoo.train.build_member_model``: the
      package's ``build_model`` after ``torch.manual_seed`` with the member's init seed), same
      optimiser and OneCycle schedule stepped per batch (the package's ``make_optimizer`` /
      ``make_scheduler``, so the hyper-parameters cannot drift), same batch size and epochs,
      the same dropped single-sample trailing batch, and the same evaluation at epoch 0 and
      after every epoch (full train set in eval mode + test set, batches of 1024, through
      DataLoaders with a per-sample ``Normalize``). It writes no checkpoints or results files,
      which favours the baseline slightly.

    The accuracy check (``accuracy_comparison``): final test accuracy per member on each side,
    mean and sd, the paired difference with its standard error, and a two-sample
    Kolmogorov-Smirnov test; packing must not change what is trained.

    A *model-epoch* is one epoch of one member (``MemberResult.epochs_run`` for ours; a member
    that diverges stops early on both sides, as in the package). The headline number is
    ``model_epochs / wall_s`` per side and the ratio ours / baseline. Mean final test accuracy is
    reported per side so a reader can see that both sides trained comparable models (they are
    not bit-identical: the shuffling and augmentation draw from different generators).

Why the two sides differ
    Ours keeps the whole (tiny) dataset as one normalised tensor, cuts batches by index, and
    augments the batch at once (``BatchAugment``: kornia's batched augmentation, no per-sample
    Python), trains the seeds of a ResNet grid cell as one packed model (grouped convolutions,
    ``phasezoo.models.packed``; ``--no-pack`` turns that off), and trains several jobs at once
    in a process pool, one thread each (tiny models do not use many cores well). The baseline pays, per sample, a Python
    ``__getitem__`` and a chain of transform calls, then ``default_collate`` per batch, and
    trains one model at a time with all of torch's threads.

How to run (from the repository root)
    make bench                                        # = .venv/bin/python benchmarks/train_throughput.py
    .venv/bin/python benchmarks/train_throughput.py --zoo digits-resnet18 --profile mini
    .venv/bin/python benchmarks/train_throughput.py --members 6 --epochs 3   # a quick look
    .venv/bin/python benchmarks/train_throughput.py --members 2 --epochs 1 --workers 1 \
        --out /tmp/tt.json                                                    # a smoke test

    Options: ``--epochs N`` overrides the spec's epoch count on both sides; ``--members K``
    keeps K members spread evenly over the grid (``numpy.linspace`` over its load-major order,
    so the corners are included); ``--workers`` is our process count; ``--threads`` the
    baseline's torch threads (default: torch's default, all cores); ``--loader-workers`` the
    baseline DataLoader's worker processes (default 0). The result is written atomically to
    ``--out`` (default ``benchmarks/results/train_throughput.json`` beside this script) and a
    short table is printed.

Caveats
    * Wall-clock numbers on a shared machine are noisy: the JSON records the load average at the
      start; rerun on an idle machine before quoting a ratio. Multi-threaded torch suffers most:
      on a busy 2-core machine a 2-thread run of a tiny model can be ten times slower than a
      1-thread run (OpenMP threads wait on each other), which hits the baseline (all cores by
      default) and ``--workers 1`` (which trains in this process with all cores); compare with
      ``--threads 1`` before drawing conclusions.
    * Ours runs first, then the baseline; both pay their imports and the digits load before the
      clock starts in this process, but ours' worker processes import torch and load the data
      inside the timed call (that is the real cost of a process pool, so it is counted).
    * ``num_workers=0`` for the baseline: on two cores, DataLoader worker processes compete with
      the training threads and do not help 8x8 images; try ``--loader-workers`` to check.
    * The baseline pads the crop with 0 in [0, 1] pixel space (torchvision's default, before
      ``Normalize``); the package pads normalised data with 0, i.e. the train-mean colour.
      Digit backgrounds are 0, so the two are nearly the same augmentation.
    * CPU only: the comparison is about the data path and scheduling on small machines; on a GPU
      the tensor-resident path wins by more, since a DataLoader also copies every batch over.

Only the standard library is imported at module level: the process pool spawns workers, which
re-import this file as ``__mp_main__``; heavy imports here would be charged to our side.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from phasezoo.store import atomic_write_json

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "train_throughput.json"


# ----------------------------------------------------------------------------- the spec


def _raw_checkpoints(path: Path, profile: str):
    """The effective ``checkpoints`` setting of ``profile``, with the precedence of
    ``phasezoo.spec``: profile training (file, then its bases), then top-level training."""
    import yaml

    chain = []
    while path is not None:
        raw = yaml.safe_load(path.read_text()) or {}
        chain.append(raw)
        path = (path.parent / str(raw["extends"])) if raw.get("extends") else None
    for raw in chain:
        prof = (raw.get("profiles") or {}).get(profile) or {}
        if "checkpoints" in (prof.get("training") or {}):
            return prof["training"]["checkpoints"]
    for raw in chain:
        if "checkpoints" in (raw.get("training") or {}):
            return raw["training"]["checkpoints"]
    return None


def bench_spec(zoo: str, profile: str, epochs: int | None, members: int | None, tmp: Path):
    """The zoo spec to benchmark: a temporary copy of the zoo's YAML with the profile's epochs
    replaced (validated by the package's own loader), restricted to ``members`` members spread
    evenly over the grid. Returns ``(spec, original_epochs)``."""
    import numpy as np
    import yaml

    from phasezoo.spec import ZooSpec, load_spec

    spec = load_spec(zoo)
    prof = spec.profile(profile)
    original_epochs = prof.training.epochs
    if epochs is not None and epochs != original_epochs:
        src = Path(spec.source)
        raw = yaml.safe_load(src.read_text())
        raw["name"] = spec.name  # the name would otherwise default to the temporary file's stem
        if raw.get("extends"):  # keep the base reachable from the temporary folder
            raw["extends"] = str((src.parent / str(raw["extends"])).resolve())
        ptraining = dict(raw["profiles"][profile].get("training") or {})
        ptraining["epochs"] = int(epochs)
        ckpt = _raw_checkpoints(src, profile)
        if isinstance(ckpt, dict) and "at" in ckpt:  # explicit epochs beyond the new end are invalid
            ptraining["checkpoints"] = {"at": sorted(e for e in ckpt["at"] if e <= epochs)}
        raw["profiles"][profile]["training"] = ptraining
        path = tmp / f"{spec.name}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        spec = load_spec(path)

    all_members = spec.members(profile)
    if members is None or members >= len(all_members):
        return spec, original_epochs
    idx = sorted({int(round(i)) for i in np.linspace(0, len(all_members) - 1, members)})
    keep = tuple(all_members[i].member for i in idx)
    fields = {f.name: getattr(spec, f.name) for f in dataclasses.fields(ZooSpec)}
    return _SubsetSpec(**fields, keep=keep), original_epochs


def _subset_spec_class():
    from phasezoo.spec import ZooSpec

    @dataclasses.dataclass(frozen=True)
    class SubsetSpec(ZooSpec):
        """A zoo spec whose grid is cut down to the named members (order kept)."""

        keep: tuple = ()

        def members(self, profile):
            return [m for m in super().members(profile) if m.member in self.keep]

    return SubsetSpec


def _SubsetSpec(**kw):  # noqa: N802 - built lazily so module import stays torch-free
    return _subset_spec_class()(**kw)


# ----------------------------------------------------------------------------- ours


def run_ours(spec, profile: str, workers: int, pack: bool | None = None) -> dict:
    from phasezoo.zoo import train_zoo

    def on_result(res) -> None:
        acc = res.final.get("test_acc", float("nan"))
        print(f"  ours      {res.member}  {res.status:8s} {res.epochs_run:3d} ep  "
              f"{res.wall_s:7.1f} s  test_acc {acc:.3f}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(prefix="phasezoo-bench-") as root:
        t0 = time.perf_counter()
        results = train_zoo(spec, profile, root=root, device="cpu", workers=workers,
                            progress=False, pack=pack, on_result=on_result)
        wall = time.perf_counter() - t0
    order = {m.member: i for i, m in enumerate(spec.members(profile))}
    results.sort(key=lambda r: order[r.member])
    per_member = [{"member": r.member, "status": r.status, "epochs_run": r.epochs_run,
                   "wall_s": r.wall_s, "test_acc": r.final.get("test_acc"),
                   "train_loss": r.final.get("train_loss")} for r in results]
    return _side(wall, per_member, checkpoints=True)


# ----------------------------------------------------------------------------- baseline


class TransformDataset:
    """Per-sample dataset: image ``i`` of a (N, C, H, W) tensor through ``transform``."""

    def __init__(self, x, y, transform):
        self.x, self.y, self.transform = x, y, transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i):
        return self.transform(self.x[i]), self.y[i]


def raw_digits():
    """scikit-learn's digits in [0, 1] (pixels / 16) as (N, 1, 8, 8) float tensors, split exactly
    as ``phasezoo.data.digits.load_digits`` splits them (checked against it), plus the train
    split's per-channel mean / population std."""
    import numpy as np
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from phasezoo.data import load_dataset

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    # phasezoo.data.digits has no separate split function: the same call, checked below.
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.2, stratify=y, random_state=0)
    x_tr, x_te = torch.from_numpy(x_tr), torch.from_numpy(x_te)
    y_tr, y_te = torch.from_numpy(y_tr), torch.from_numpy(y_te)
    std, mean = torch.std_mean(x_tr, dim=(0, 2, 3), correction=0)
    ref = load_dataset("digits")
    if not (torch.equal(ref.train_y, y_tr) and torch.equal(ref.test_y, y_te)
            and torch.allclose(ref.unnormalise(ref.train_x), x_tr, atol=1e-5)
            and torch.allclose(ref.unnormalise(ref.test_x), x_te, atol=1e-5)):
        raise SystemExit("baseline digits differ from phasezoo's split; update raw_digits()")
    return x_tr, y_tr, x_te, y_te, tuple(mean.tolist()), tuple(std.tolist())


def baseline_transforms(augmentation, image_size: int, mean, std):
    """(train transform, eval transform) as per-sample torchvision v2 pipelines mirroring the
    zoo's augmentation spec: random crop, horizontal flip, rotation, then normalisation."""
    from torchvision.transforms import InterpolationMode, v2

    from phasezoo.data import BatchAugment

    aug = BatchAugment.from_spec(augmentation)
    steps = []
    if aug.crop_padding:
        steps.append(v2.RandomCrop(image_size, padding=aug.crop_padding))
    if aug.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if aug.rotation_degrees:
        steps.append(v2.RandomRotation(aug.rotation_degrees, interpolation=InterpolationMode.BILINEAR))
    normalise = v2.Normalize(mean, std)
    return v2.Compose([*steps, normalise]), v2.Compose([normalise])


def _evaluate_loader(model, loader) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    with torch.no_grad():
        for xb, yb in loader:
            out = model(xb)
            loss_sum += float(F.cross_entropy(out, yb, reduction="sum"))
            correct += int((out.argmax(1) == yb).sum())
            n += len(yb)
    model.train()
    return loss_sum / n, correct / n


def train_baseline_member(member, data, loader_workers: int) -> dict:
    """One member the plain way; mirrors phasezoo.train.train_member minus the store."""
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from phasezoo.train import (
        EVAL_BATCH_SIZE, build_member_model, make_optimizer, make_scheduler, member_seeds,
        steps_per_epoch,
    )

    t0 = time.perf_counter()
    x_tr, y_tr, x_te, y_te, mean, std = data
    train_tf, eval_tf = baseline_transforms(member.augmentation, x_tr.shape[-1], mean, std)
    model = build_member_model(member)  # torch.manual_seed(init seed), then build_model
    optimizer = make_optimizer(model, member)
    scheduler = make_scheduler(optimizer, member, member.epochs * steps_per_epoch(len(y_tr), member.batch_size))
    generator = torch.Generator().manual_seed(member_seeds(member.seed)[1])
    train_loader = DataLoader(TransformDataset(x_tr, y_tr, train_tf), batch_size=member.batch_size,
                              shuffle=True, generator=generator, num_workers=loader_workers,
                              persistent_workers=loader_workers > 0)
    eval_train = DataLoader(TransformDataset(x_tr, y_tr, eval_tf), batch_size=EVAL_BATCH_SIZE)
    eval_test = DataLoader(TransformDataset(x_te, y_te, eval_tf), batch_size=EVAL_BATCH_SIZE)

    def evaluate() -> dict:
        train_loss, train_acc = _evaluate_loader(model, eval_train)
        test_loss, test_acc = _evaluate_loader(model, eval_test)
        return {"train_loss": train_loss, "train_acc": train_acc, "test_loss": test_loss,
                "test_acc": test_acc}

    final = evaluate()  # epoch 0, as the package records it
    status, epochs_run = "done", 0
    for _epoch in range(1, member.epochs + 1):
        model.train()
        loss_sum, seen = 0.0, 0
        for xb, yb in train_loader:
            if len(yb) < 2:  # phasezoo.train.steps_per_epoch: BatchNorm needs two samples
                continue
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(loss.detach()) * len(yb)
            seen += len(yb)
        final = evaluate()
        epochs_run += 1
        if not (math.isfinite(loss_sum / seen) and math.isfinite(final["train_loss"])):
            status = "diverged"
            break
    return {"member": member.member, "status": status, "epochs_run": epochs_run,
            "wall_s": time.perf_counter() - t0, "test_acc": final["test_acc"],
            "train_loss": final["train_loss"]}


def run_baseline(members, threads: int, loader_workers: int) -> dict:
    import torch

    data = raw_digits()  # before the clock, as ours has its data loaded before its clock
    torch.set_num_threads(threads)
    per_member = []
    t0 = time.perf_counter()
    for m in members:
        r = train_baseline_member(m, data, loader_workers)
        per_member.append(r)
        print(f"  baseline  {r['member']}  {r['status']:8s} {r['epochs_run']:3d} ep  "
              f"{r['wall_s']:7.1f} s  test_acc {r['test_acc']:.3f}", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    return _side(wall, per_member, checkpoints=False)


# ----------------------------------------------------------------------------- reporting


def _side(wall: float, per_member: list[dict], *, checkpoints: bool) -> dict:
    epochs = sum(r["epochs_run"] for r in per_member)
    accs = [r["test_acc"] for r in per_member if r["test_acc"] is not None]
    statuses: dict[str, int] = {}
    for r in per_member:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    return {
        "wall_s": round(wall, 3),
        "model_epochs": epochs,
        "model_epochs_per_s": epochs / wall if wall > 0 else None,
        "mean_final_test_acc": round(sum(accs) / len(accs), 4) if accs else None,
        "statuses": statuses,
        "writes_checkpoints": checkpoints,
        "members": per_member,
    }




def compare_accuracy(ours: dict, baseline: dict) -> dict:
    """Do the two sides train the same distribution of models? Final test accuracy per member:
    mean and sd per side, the paired difference (same member, same initialisation, different
    data order) with its standard error, and a two-sample Kolmogorov-Smirnov test."""
    import numpy as np
    from scipy.stats import ks_2samp

    a = {r["member"]: r["test_acc"] for r in ours["members"] if r["test_acc"] is not None}
    b = {r["member"]: r["test_acc"] for r in baseline["members"] if r["test_acc"] is not None}
    common = [m for m in a if m in b]
    xa, xb = np.array([a[m] for m in common]), np.array([b[m] for m in common])
    if len(common) < 2:
        return {"n": len(common)}
    d = xa - xb
    ks = ks_2samp(xa, xb)
    return {
        "n": len(common),
        "ours_mean_sd": [round(float(xa.mean()), 4), round(float(xa.std(ddof=1)), 4)],
        "baseline_mean_sd": [round(float(xb.mean()), 4), round(float(xb.std(ddof=1)), 4)],
        "paired_diff_mean": round(float(d.mean()), 4),
        "paired_diff_se": round(float(d.std(ddof=1) / np.sqrt(len(d))), 4),
        "paired_abs_diff_median": round(float(np.median(np.abs(d))), 4),
        "ks_statistic": round(float(ks.statistic), 4),
        "ks_pvalue": round(float(ks.pvalue), 4),
    }


def print_summary(payload: dict, out: Path) -> None:
    s = payload["settings"]
    print(f"\ntrain_throughput: {s['zoo']}/{s['profile']}, {s['n_members']} members x "
          f"{s['epochs']} epochs, cpu, {s['cpu_count']} cores "
          f"(ours: {s['workers']} workers; baseline: {s['baseline_threads']} threads, "
          f"{s['loader_workers']} loader workers)")
    print(f"{'side':10s} {'wall_s':>9s} {'model_epochs':>13s} {'model_ep/s':>11s} {'mean_test_acc':>14s}")
    for side in ("ours", "baseline"):
        d = payload[side]
        acc = d["mean_final_test_acc"]
        print(f"{side:10s} {d['wall_s']:9.1f} {d['model_epochs']:13d} "
              f"{d['model_epochs_per_s']:11.3f} {'n/a' if acc is None else f'{acc:.3f}':>14s}")
    print(f"ratio ours/baseline (model-epochs per second): {payload['ratio_ours_over_baseline']:.2f}x")
    c = payload["accuracy_comparison"]
    if "ks_pvalue" in c:
        print(f"final test accuracy: ours {c['ours_mean_sd'][0]:.3f} ± {c['ours_mean_sd'][1]:.3f}, baseline "
              f"{c['baseline_mean_sd'][0]:.3f} ± {c['baseline_mean_sd'][1]:.3f}; paired difference "
              f"{c['paired_diff_mean']:+.4f} ± {c['paired_diff_se']:.4f} (SE); KS p = {c['ks_pvalue']:.2f}")
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- main


def _warm_up(member) -> None:
    """One forward/backward pass in this process before any clock starts, so that first-call
    costs (kernel selection, allocator) fall on neither side when ``--workers 1`` trains here."""
    import torch

    from phasezoo.models import build_model

    model = build_model(member.arch, width=1, in_channels=1, num_classes=10)
    model(torch.randn(8, 1, 8, 8)).sum().backward()
    model.eval()
    with torch.no_grad():
        model(torch.randn(8, 1, 8, 8))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="digits-resnet18", help="packaged zoo name or YAML path (default %(default)s)")
    p.add_argument("--profile", default="mini", help="profile of the zoo (default %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="override the spec's epochs on both sides")
    p.add_argument("--members", type=int, default=None,
                   help="use K members spread evenly over the grid (default: all)")
    p.add_argument("--workers", type=int, default=2, help="our training processes (default %(default)s)")
    p.add_argument("--threads", type=int, default=None,
                   help="baseline torch threads (default: torch's default, all cores)")
    p.add_argument("--loader-workers", type=int, default=0,
                   help="baseline DataLoader worker processes (default %(default)s)")
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=None,
                   help="ours: pack the seeds of a cell (default: the package's default); --no-pack: one by one")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="result JSON (default benchmarks/results/train_throughput.json)")
    a = p.parse_args(argv)
    for name in ("epochs", "members", "workers", "threads"):
        v = getattr(a, name)
        if v is not None and v < 1:
            p.error(f"--{name} must be at least 1")
    if a.loader_workers < 0:
        p.error("--loader-workers must be >= 0")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import torchvision  # noqa: F401  (imported before any clock starts)

    from phasezoo.data import load_dataset

    default_threads = torch.get_num_threads()
    baseline_threads = args.threads or default_threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else None

    with tempfile.TemporaryDirectory(prefix="phasezoo-bench-spec-") as tmp:
        spec, spec_epochs = bench_spec(args.zoo, args.profile, args.epochs, args.members, Path(tmp))
        members = spec.members(args.profile)
        epochs = members[0].epochs
        if spec.dataset != "digits":
            raise SystemExit(f"the baseline supports the digits zoos only, not {spec.dataset!r}")
        load_dataset(spec.dataset)  # warm this process's cache (train_zoo loads it first thing)
        _warm_up(members[0])
        print(f"{spec.name}/{args.profile}: {len(members)} members x {epochs} epochs "
              f"(spec: {spec_epochs})", file=sys.stderr, flush=True)

        torch.set_num_threads(default_threads)  # matters for --workers 1 (runs in this process)
        ours = run_ours(spec, args.profile, args.workers, pack=args.pack)
        baseline = run_baseline(members, baseline_threads, args.loader_workers)

    ratio = ours["model_epochs_per_s"] / baseline["model_epochs_per_s"]
    for side in (ours, baseline):
        side["model_epochs_per_s"] = round(side["model_epochs_per_s"], 4)
    payload = {
        "benchmark": "train_throughput",
        "settings": {
            "zoo": spec.name,
            "profile": args.profile,
            "n_members": len(members),
            "members": [m.member for m in members],
            "epochs": epochs,
            "spec_epochs": spec_epochs,
            "device": "cpu",
            "workers": args.workers,
            "pack": "default (ResNet cells packed)" if args.pack is None else bool(args.pack),
            "ours_threads_per_worker": default_threads if args.workers == 1 else max(1, cores // args.workers),
            "baseline_threads": baseline_threads,
            "loader_workers": args.loader_workers,
            "eval_batch_size": 1024,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpu_count": cores,
            "loadavg_at_start": [round(v, 2) for v in loadavg] if loadavg else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        },
        "ours": ours,
        "baseline": baseline,
        "ratio_ours_over_baseline": round(ratio, 3),
        "accuracy_comparison": compare_accuracy(ours, baseline),
        "notes": [
            "ours: phasezoo.zoo.train_zoo in a temporary root, timed whole (pool start-up, worker "
            "imports and data loading, training, per-epoch train+test evaluation, results, "
            "checkpoints and resume states)",
            "baseline: one member after another in one process, DataLoader over a per-sample "
            "Dataset with torchvision.transforms.v2 per sample, same per-epoch evaluation; it writes "
            "no checkpoints or results, which favours it slightly",
            "the two sides draw shuffling and augmentation from different generators: accuracies "
            "are comparable, not identical",
        ],
    }
    atomic_write_json(args.out, payload)
    print_summary(payload, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
