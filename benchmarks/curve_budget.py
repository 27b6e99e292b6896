"""Does a curve's mode connectivity still move when its budget grows?

The convergence rule (:func:`phasezoo.landscape.curves.curve_converged`) judges a curve from its
own loss windows: at most ``plateau_tol`` of the fall in the last fifth of the steps. A curve
whose learning rate has decayed to its floor can satisfy that and still be far from fitted. This
benchmark retrains the curve of one seed pair of a trained zoo with the zoo's curve settings and
``--epochs`` multiplied by each of ``--factors``, and records, per budget: steps, seconds, the
curve's final training loss (``curve_loss_end``), the endpoints' loss, the rule's verdict and
``mc_error_chord`` / ``mc_loss_chord``. If mc keeps moving by more than the zoo's τ_mc as the
budget grows, the zoo's barriers are (partly) a budget artefact, whatever the rule says.

    python benchmarks/curve_budget.py convection-pinn --profile mini --cell beta1_lr0.1 \
        --seeds 0 123 --factors 1 2 4 8

Results are appended (one entry per run, with the machine and torch threads) to
``benchmarks/results/curve_budget.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from phasezoo.data import load_dataset
from phasezoo.landscape.curves import bezier_mode_connectivity
from phasezoo.spec import load_spec
from phasezoo.store import ZooStore
from phasezoo.tasks import task_for
from phasezoo.data import eval_split
from phasezoo.store import load_member

RESULTS = Path(__file__).parent / "results" / "curve_budget.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("zoo")
    ap.add_argument("--profile", default="mini")
    ap.add_argument("--root", default="data/zoos")
    ap.add_argument("--cell", required=True, help="cell folder prefix, e.g. beta1_lr0.1 or w0008_b0032")
    ap.add_argument("--seeds", nargs=2, required=True, help="the two seeds of the pair")
    ap.add_argument("--epoch", type=int, default=None, help="checkpoint epoch (default: the last)")
    ap.add_argument("--factors", nargs="+", type=float, default=[1, 2, 4, 8])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    spec = load_spec(args.zoo)
    prof = spec.profile(args.profile)
    epoch = args.epoch if args.epoch is not None else prof.training.epochs
    store = ZooStore(args.root, spec.name, args.profile)
    dirs = [store.dir / f"{args.cell}_s{s}" for s in args.seeds]
    model_a, config = load_member(dirs[0], epoch)
    model_b, _ = load_member(dirs[1], epoch)
    data = load_dataset(config["dataset"])
    task = task_for(config)
    m = dict(prof.metrics["mode_connectivity"])
    ex, ey = eval_split(data, "train")
    rows = []
    for f in args.factors:
        epochs = max(1, round(m["epochs"] * f))
        t0 = time.perf_counter()
        r = bezier_mode_connectivity(
            model_a, model_b, data.train_x, data.train_y, loss_fn=task.batch_loss, evaluate=task.evaluate,
            epochs=epochs, lr=m["lr"], momentum=m["momentum"], weight_decay=m["weight_decay"],
            batch_size=m["batch_size"], num_t=m["num_t"], seed=m["seed"], optimizer=m["optimizer"],
            eval_x=ex, eval_y=ey, plateau_tol=m["plateau_tol"], min_steps=m["min_steps"])
        d = r["diagnostics"]
        row = {"factor": f, "epochs": epochs, "steps": r["settings"]["steps"],
               "seconds": round(time.perf_counter() - t0, 1),
               "curve_loss_end": d["curve_loss_end"], "loss_endpoints": d["loss_endpoints"],
               "converged": d["converged"], "convergence": d["convergence"],
               "mc_error_chord": r["mc_error_chord"], "mc_loss_chord": r["mc_loss_chord"],
               "error": r["error"]}
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("steps", "seconds", "curve_loss_end", "converged",
                                              "mc_error_chord", "mc_loss_chord")}), flush=True)
    entry = {"zoo": spec.name, "profile": args.profile, "cell": args.cell, "seeds": args.seeds,
             "epoch": epoch, "settings": m, "runs": rows,
             "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "threads": args.threads,
                         "torch": torch.__version__},
             "date": time.strftime("%Y-%m-%d")}
    old = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(old + [entry], indent=1) + "\n")


if __name__ == "__main__":
    main()
