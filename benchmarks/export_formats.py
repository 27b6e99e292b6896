"""Size and read time of a trained zoo in each on-disk format: our store, the authors' ray.tune
layout (``export --format ptmz``) and the Hugging Face / Croissant folder (``export --format hf``).

For each zoo: the bytes and files of each format, the wall time of the export, and the time to
read every stored checkpoint back as tensors, the way a user of that format would:

* ours: :class:`phasezoo.wsl.ZooDataset` at each checkpoint epoch, every item's flat weights
  (safetensors, sha256 verified; the time includes building each epoch's table of properties),
  and the store alone (``MemberStore.load_checkpoint`` of every checkpoint);
* ptmz: ``torch.load(path, weights_only=True)`` of every ``checkpoint_NNNNNN/checkpoints``;
* hf: ``datasets.load_dataset(folder)`` (Parquet to Arrow, its cache in a fresh folder), then
  every row's ``layer_weights`` as NumPy arrays;
* croissant: ``mlcroissant.Dataset(jsonld=...).records("members")``, every record.

Each read is timed once, cold for the Python process but with the files in the OS page cache
(they were just written). ::

    .venv/bin/python benchmarks/export_formats.py --root data/zoos --profile mini
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from phasezoo.executors import processor_name

HERE = Path(__file__).resolve().parent
DEFAULT_ZOOS = ("digits-resnet18", "digits-vit", "text-gpt", "convection-pinn")


def folder_size(path: Path) -> tuple[int, int]:
    files = [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), len(files)


def read_ours(zoo, profile, root) -> tuple[float, int]:
    from phasezoo.wsl import ZooDataset
    from phasezoo.zoo import Zoo

    z = Zoo.of(zoo, profile, root)
    t0, n = time.perf_counter(), 0
    for e in z.settings.training.checkpoint_epochs:
        ds = ZooDataset(z, epoch=e, status=("done", "partial", "diverged"), include_buffers=True)
        for i in range(len(ds)):
            n += ds[i]["weights"].numel() > 0
    return time.perf_counter() - t0, n


def read_store(zoo, profile, root) -> tuple[float, int]:
    """Every checkpoint through the store alone (sha256-verified safetensors), no table."""
    from phasezoo.zoo import Zoo

    z = Zoo.of(zoo, profile, root)
    t0, n = time.perf_counter(), 0
    for m in z.members:
        ms = z.store.member(m.member)
        for e in ms.checkpoint_epochs():
            n += len(ms.load_checkpoint(e)[1]) > 0
    return time.perf_counter() - t0, n


def read_ptmz(folder: Path) -> tuple[float, int]:
    t0, n = time.perf_counter(), 0
    for path in sorted(folder.glob("*/checkpoint_*/checkpoints")):
        state = torch.load(path, weights_only=True)
        n += len(state) > 0
    return time.perf_counter() - t0, n


def read_hf(folder: Path) -> tuple[float, int]:
    import datasets

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        ds = datasets.load_dataset(str(folder), cache_dir=cache)["train"].with_format("numpy")
        n = 0
        for row in ds:
            n += sum(np.asarray(w).size for w in row["layer_weights"]) > 0
        return time.perf_counter() - t0, n


def read_croissant(folder: Path) -> tuple[float, int]:
    import mlcroissant as mlc

    t0 = time.perf_counter()
    n = sum(1 for _ in mlc.Dataset(jsonld=str(folder / "croissant.json")).records(record_set="members"))
    return time.perf_counter() - t0, n


def measure(zoo: str, profile: str, root: Path, work: Path) -> dict:
    from phasezoo.publish.hf import export_hf
    from phasezoo.publish.ptmz import export_ptmz
    from phasezoo.zoo import Zoo

    z = Zoo.of(zoo, profile, root)
    ours_bytes, ours_files = folder_size(z.store.dir)
    out = {"zoo": zoo, "members": len(z.members), "formats": {}}
    t, n = read_ours(z, profile, root)
    ts, _ = read_store(z, profile, root)
    out["formats"]["ours"] = {"bytes": ours_bytes, "files": ours_files, "read_s": round(t, 3), "checkpoints": n,
                              "store_read_s": round(ts, 3)}
    t0 = time.perf_counter()
    export_ptmz(z, to=work / f"{zoo}-ptmz")
    export_s = time.perf_counter() - t0
    b, f = folder_size(work / f"{zoo}-ptmz")
    t, n = read_ptmz(work / f"{zoo}-ptmz")
    out["formats"]["ptmz"] = {"bytes": b, "files": f, "export_s": round(export_s, 2), "read_s": round(t, 3),
                              "checkpoints": n}
    t0 = time.perf_counter()
    info = export_hf(z, to=work / f"{zoo}-hf")
    export_s = time.perf_counter() - t0
    b, f = folder_size(work / f"{zoo}-hf")
    t, n = read_hf(work / f"{zoo}-hf")
    tc, nc = read_croissant(work / f"{zoo}-hf")
    out["formats"]["hf"] = {"bytes": b, "files": f, "shards": info["shards"], "parquet_bytes": info["bytes"],
                            "export_s": round(export_s, 2), "read_s": round(t, 3), "rows": n,
                            "croissant_read_s": round(tc, 3), "croissant_records": nc}
    for fmt in ("ptmz", "hf"):
        shutil.rmtree(work / f"{zoo}-{fmt}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("zoos", nargs="*", default=list(DEFAULT_ZOOS))
    p.add_argument("--profile", default="mini")
    p.add_argument("--root", type=Path, default=Path("data/zoos"))
    p.add_argument("--out", type=Path, default=HERE / "results" / "export_formats.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for zoo in args.zoos:
            r = measure(zoo, args.profile, args.root, Path(work))
            rows.append(r)
            f = r["formats"]
            print(f"{zoo}/{args.profile} ({r['members']} members): "
                  f"ours {f['ours']['bytes'] / 1e6:.1f} MB, ZooDataset {f['ours']['read_s']:.2f} s "
                  f"(store alone {f['ours']['store_read_s']:.2f} s); "
                  f"ptmz {f['ptmz']['bytes'] / 1e6:.1f} MB, export {f['ptmz']['export_s']:.1f} s, read {f['ptmz']['read_s']:.2f} s; "
                  f"hf {f['hf']['bytes'] / 1e6:.1f} MB ({f['hf']['shards']} shards), export {f['hf']['export_s']:.1f} s, "
                  f"load_dataset + rows {f['hf']['read_s']:.2f} s, mlcroissant {f['hf']['croissant_read_s']:.2f} s",
                  flush=True)
    out = {
        "benchmark": "export_formats",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": processor_name("cpu"),
                    "cpus": os.cpu_count(), "load_average_at_start": [round(v, 2) for v in load],
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
                    "python": sys.version.split()[0], "torch": torch.__version__, "threads": 1},
        "profile": args.profile, "zoos": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, indent=2) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
