"""GPU zoo benchmark: model-epochs per second, packed and one by one, and the GPU-hours a paper
zoo would take at that rate, against the paper's budget.

What it measures
    Cells spread over a zoo's grid (the four corners of the load x temperature grid, then its
    centre, then evenly spaced others; ``--cells``) are trained for ``--epochs`` epochs through
    the package's own loop (``phasezoo.train.train_members``, into a temporary folder, with
    results, checkpoints and resume states written as in a real run), twice each: the cell's
    seeds packed into one model (``pack=True``), and one by one (``pack=False``). The device
    options (``--channels-last``, ``--autocast bf16``, ``--compile``) apply to both. A
    *model-epoch* is one epoch of one seed; the headline numbers are model-epochs per second of
    each way and their ratio.

    Projection: the seconds per model-epoch of the measured cells (packed, the faster way where
    it is not) times the model-epochs of the zoo's paper grid (members x the paper profile's
    epochs), in GPU-hours, with the range given by the cheapest and the dearest measured cell;
    the paper trained 12 zoos on 16 H100 for 30 days (11,520 GPU-hours, 960 per zoo on average)
    and measured them for 14 more. The projection runs one job at a time per GPU; small models
    leave room for several (``--gpus-per-task 0.25`` on Ray), which it does not count.

    The epochs of each member are set to ``--epochs`` (the OneCycle schedule is compressed to
    them), and the first epoch of each measured way is part of the time (CUDA context, kernel
    selection and compilation included), so use 2 or more epochs on a GPU.

Data
    The zoo's dataset from ``--data-dir``; ``--synthetic`` trains on random images of the
    dataset's shape and size instead (for timing on a machine without the files: the time of an
    epoch does not depend on the pixel values, except through divergence).

How to run (from the repository root)
    .venv/bin/python benchmarks/gpu_zoo.py --zoo cifar10-resnet18 --epochs 3 --cells 5 --synthetic
    .venv/bin/python benchmarks/gpu_zoo.py --zoo cifar10-resnet18 --channels-last --autocast bf16
    .venv/bin/python benchmarks/gpu_zoo.py --tiny        # the CPU version: seconds, a test runs it

    Results are written atomically to ``--out`` (default ``benchmarks/results/gpu_zoo.json``;
    ``--tiny``: ``gpu_zoo_tiny.json``) with the device name, the load and the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import os
import sys
import tempfile
import time
from pathlib import Path

from phasezoo.executors import processor_name
from phasezoo.store import atomic_write_json

HERE = Path(__file__).resolve().parent
#: the paper's compute (Section 3): 16 H100 for 30 days of training and 14 of measuring, 12 zoos
PAPER = {"gpus": 16, "train_days": 30, "measure_days": 14, "zoos": 12}
PAPER_TRAIN_GPU_HOURS = PAPER["gpus"] * 24 * PAPER["train_days"]


def pick_cells(spec, profile: str, n: int) -> list[list]:
    """``n`` cells of the grid (lists of their seeds' MemberSpecs): corners, centre, then others
    evenly spread over the remaining cells in grid order."""
    import numpy as np

    from phasezoo.spec import by_cell

    cells = list(by_cell(spec.members(profile)).values())
    prof = spec.profile(profile)
    loads, temps = prof.grid[spec.load_axis], prof.grid[spec.temperature_axis]
    at = {(c[0].axis_value(spec.load_axis), c[0].axis_value(spec.temperature_axis)): c for c in cells}
    order = [(loads[0], temps[0]), (loads[-1], temps[-1]), (loads[0], temps[-1]), (loads[-1], temps[0]),
             (loads[len(loads) // 2], temps[len(temps) // 2])]
    chosen = []
    for key in order:
        if key in at and at[key] not in chosen:
            chosen.append(at[key])
    rest = [c for c in cells if c not in chosen]
    if len(chosen) < n and rest:
        for i in sorted({int(round(i)) for i in np.linspace(0, len(rest) - 1, n - len(chosen))}):
            chosen.append(rest[i])
    return chosen[:n]


def use_synthetic(dataset: str, data_dir) -> None:
    """Random standardised images of ``dataset``'s shape and split sizes, placed in the loader's
    cache so that training reads them as the dataset (timing only)."""
    import torch

    from phasezoo.data import registry
    from phasezoo.data.vision import VisionData

    info = registry.DATASETS[dataset]
    if info.kind != "vision":
        raise SystemExit(f"--synthetic supports image datasets, not {dataset!r}")
    g = torch.Generator().manual_seed(0)
    shape = (info.in_channels, info.image_size, info.image_size)
    data = VisionData(
        name=dataset, train_x=torch.randn(info.num_train, *shape, generator=g),
        train_y=torch.randint(0, info.num_classes, (info.num_train,), generator=g),
        test_x=torch.randn(info.num_test, *shape, generator=g),
        test_y=torch.randint(0, info.num_classes, (info.num_test,), generator=g),
        num_classes=info.num_classes, in_channels=info.in_channels, image_size=info.image_size,
        mean=(0.0,) * info.in_channels, std=(1.0,) * info.in_channels)
    with registry._cache_lock:
        registry._cache[(dataset, registry.resolve_data_dir(data_dir))] = data


def time_cell(cell, epochs: int, device, pack: bool, options, data_dir) -> dict:
    """Train one cell's seeds for ``epochs`` epochs; wall time and model-epochs."""
    import torch

    from phasezoo.train import train_members

    members = [dataclasses.replace(m, epochs=epochs, checkpoint_epochs=(epochs,)) for m in cell]
    with tempfile.TemporaryDirectory(prefix="phasezoo-gpu-bench-") as root:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        results = train_members(members, [Path(root) / m.member for m in members], device=device,
                                data_dir=data_dir, pack=pack, options=options)
        if device.type == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
    model_epochs = sum(r.epochs_run for r in results)
    return {"wall_s": round(wall, 3), "model_epochs": model_epochs,
            "s_per_model_epoch": wall / model_epochs if model_epochs else None,
            "statuses": [r.status for r in results],
            "final_test_acc": [r.final.get("test_acc") for r in results]}


def project(spec, seconds: list[float]) -> dict:
    """GPU-hours of the zoo's paper grid at the measured seconds per model-epoch."""
    paper = spec.members("paper")
    model_epochs = sum(m.epochs for m in paper)
    mean = sum(seconds) / len(seconds)
    return {"paper_members": len(paper), "paper_model_epochs": model_epochs,
            "gpu_hours": round(mean * model_epochs / 3600, 1),
            "gpu_hours_range": [round(min(seconds) * model_epochs / 3600, 1),
                                round(max(seconds) * model_epochs / 3600, 1)],
            "paper_train_gpu_hours_per_zoo": round(PAPER_TRAIN_GPU_HOURS / PAPER["zoos"], 1),
            "paper_train_gpu_hours_all_zoos": PAPER_TRAIN_GPU_HOURS}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--zoo", default="cifar10-resnet18", help="zoo name or YAML path (default %(default)s)")
    p.add_argument("--profile", default="paper", help="grid to sample cells from (default %(default)s)")
    p.add_argument("--cells", type=int, default=5, help="cells to measure (default %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per member (default %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cuda[:N] or cpu (default %(default)s)")
    p.add_argument("--data-dir", default=None, help="dataset root (default: the package's)")
    p.add_argument("--synthetic", action="store_true", help="random images of the dataset's shape")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--autocast", choices=["bf16"], default=None)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--tiny", action="store_true",
                   help="the CPU version: digits-resnet18, smoke grid, 2 cells, 1 epoch")
    p.add_argument("--out", type=Path, default=None, help="result JSON")
    a = p.parse_args(argv)
    if a.tiny:
        a.zoo, a.profile, a.cells, a.epochs, a.device, a.synthetic = "digits-resnet18", "smoke", 2, 1, "cpu", False
    if a.cells < 1 or a.epochs < 1:
        p.error("--cells and --epochs must be at least 1")
    a.out = a.out or HERE / "results" / ("gpu_zoo_tiny.json" if a.tiny else "gpu_zoo.json")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    from phasezoo.executors import resolve_device
    from phasezoo.spec import load_spec
    from phasezoo.train import DeviceOptions

    device = resolve_device(args.device)
    spec = load_spec(args.zoo)
    options = DeviceOptions(channels_last=args.channels_last, autocast=args.autocast, compile=args.compile)
    if args.synthetic:
        use_synthetic(spec.dataset, args.data_dir)
    from phasezoo.data import load_dataset

    load_dataset(spec.dataset, args.data_dir)  # loaded (and cached) before any clock starts
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # the first optimizer imports torch._dynamo (~4 s)
    cells = pick_cells(spec, args.profile, args.cells)
    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = []
    for cell in cells:
        m = cell[0]
        row = {"cell": f"{spec.load_axis}={m.width} batch_size={m.batch_size}", "seeds": len(cell)}
        for name, pack in (("packed", True), ("one_by_one", False)):
            row[name] = time_cell(cell, args.epochs, device, pack, options, args.data_dir)
            print(f"  {row['cell']:28s} {name:10s} {row[name]['wall_s']:8.2f} s "
                  f"{row[name]['model_epochs']} model-epochs", file=sys.stderr, flush=True)
        rows.append(row)
    tot = {name: (sum(r[name]["model_epochs"] for r in rows), sum(r[name]["wall_s"] for r in rows))
           for name in ("packed", "one_by_one")}
    rate = {name: e / w if w else None for name, (e, w) in tot.items()}
    best = [min(r["packed"]["s_per_model_epoch"] or float("inf"), r["one_by_one"]["s_per_model_epoch"] or float("inf"))
            for r in rows]
    payload = {
        "benchmark": "gpu_zoo",
        "settings": {
            "zoo": spec.name, "profile": args.profile, "cells": len(rows), "epochs": args.epochs,
            "device": str(device),
            "device_name": processor_name(device),
            "options": options.as_dict(), "synthetic": args.synthetic, "tiny": args.tiny,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(), "loadavg_at_start": [round(v, 2) for v in loadavg] if loadavg else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        },
        "cells": rows,
        "model_epochs_per_s": {k: round(v, 4) if v else None for k, v in rate.items()},
        "ratio_packed_over_one_by_one": round(rate["packed"] / rate["one_by_one"], 3)
        if rate["packed"] and rate["one_by_one"] else None,
        "projection": project(spec, best) if "paper" in spec.profiles else None,
    }
    atomic_write_json(args.out, payload)
    print(f"\ngpu_zoo: {spec.name}/{args.profile} on {payload['settings']['device_name'] or device}, "
          f"{len(rows)} cells x {args.epochs} epochs")
    for k, v in payload["model_epochs_per_s"].items():
        print(f"  {k:10s} {v:.3f} model-epochs/s")
    print(f"  packed / one by one: {payload['ratio_packed_over_one_by_one']}x")
    if payload["projection"]:
        pr = payload["projection"]
        print(f"  paper grid: {pr['paper_model_epochs']} model-epochs -> {pr['gpu_hours']} GPU-hours "
              f"(range {pr['gpu_hours_range'][0]}-{pr['gpu_hours_range'][1]}); the paper: "
              f"{pr['paper_train_gpu_hours_per_zoo']} per zoo")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
