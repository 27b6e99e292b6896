"""Hessian top eigenvalue and trace: ours (phasezoo.landscape.hessian) against PyPI's pyhessian 0.1.

What it measures
    On ONE model and ONE set of batches, in one run, on the CPU:

    1. **Hessian-vector products.** The time of one product H v over all samples for each of
       our implementations (``double_backward``, ``double_backward_cached``,
       ``forward_over_reverse``), each with the samples regrouped into one chunk (the default
       ``chunk_size``) and with the batches as given (``chunk_size=None``), for single vectors
       and for k probes at once (``matvec_batched``, k in ``--probe-batches``; time per probe),
       and for pyhessian's ``hessian.dataloader_hv_product``. Median of ``--reps`` repetitions
       after one warm-up call (the warm-up also builds the cached gradient graphs; that one-off
       cost is reported separately as ``first_call_s``). Our products and pyhessian's on the same
       vector are compared (relative L2 difference): both must differentiate the same loss.
    2. **Top eigenvalue**, ``max_iter=100, tol=1e-3`` on both sides: ours
       ``top_eigenvalue(seed=...)`` against ``hessian(...).eigenvalues(maxIter, tol)`` after
       ``torch.manual_seed(seed)`` (pyhessian draws its start vector from the global RNG).
       Wall time of the whole call, number of products, time per product, relative difference.
    3. **Trace**, same settings: ours ``trace(seed=...)`` (default ``probe_batch``) against
       ``hessian(...).trace(maxIter, tol)``; pyhessian returns the list of probe values, whose
       mean is its estimate. Both estimates are random, so they are compared against their
       standard errors as well as relatively (on the CPU, with the same seed, both sides
       happen to draw the very same probes, see below). Because the two stopping rules
       differ (pyhessian's lacks an ``abs()``: on a negative running mean it stops after two
       probes) and a relative-change rule can fire early by chance, the trace is also compared
       at a **fixed number of probes** (``--fixed-probes``; ours with ``tol=0``, pyhessian with
       ``tol=-inf``, so neither rule can fire).

Apples to apples (read from pyhessian 0.1's source)
    ``hessian(model, criterion, dataloader=batches, cuda=False)`` puts the model in eval mode;
    each product loops over the batches, per batch runs a forward, ``loss.backward(
    create_graph=True)`` (the gradient lands in ``p.grad``), then
    ``torch.autograd.grad(grads, params, grad_outputs=v)``, accumulates ``Hv_b * n_b`` and
    finally divides by the number of samples: the Hessian of the size-weighted mean loss, exactly
    our definition. Its power iteration (``v <- Hv / (‖Hv‖ + 1e-6)``, relative-change rule with
    ``abs()``) is ours up to the 1e-6; it returns the previous eigenvalue on convergence, ours the
    newest (the JSON also compares it with our previous iterate). Its trace draws Rademacher
    probes with ``torch.randint_like(p, high=2)`` (0 -> -1). It takes the trainable parameters
    in ``model.parameters()`` order, as we do. So after ``torch.manual_seed(seed)`` its start
    vector and probes are the very vectors our CPU generator seeded with ``seed`` draws
    (``randn`` / ``randint(0, 2)`` per parameter, in order, from the same Mersenne Twister
    state): on the CPU the two sides run the same computation, and the values must agree to
    floating-point noise. The same list of ``(inputs, targets)`` tensors serves as its
    ``dataloader`` (it only iterates over it).

Model and data
    By default the trained ``last`` checkpoint of ``data/zoos/digits-resnet18/mini/
    w0008_b0032_s0`` (ResNet-18, width 8, 176 258 parameters); if that zoo member is absent a
    freshly initialised ResNet-18 (width 8, ``torch.manual_seed(seed)``) is used and the output
    says so. Data: ``--batches`` × ``--batch-size`` (10 × 64) samples of the digits train split,
    drawn without replacement with a seeded permutation (the paper's 10 batches × 64 train
    samples).

How to run (from the repository root)
    .venv/bin/python -m pip install --no-deps pyhessian   # once; not a project dependency
    .venv/bin/python benchmarks/hessian.py
    .venv/bin/python benchmarks/hessian.py --reps 1 --probe-batches 4 --fixed-probes 10 \
        --out /tmp/hessian.json                                   # a quick look

    Exit status 2 with a message if pyhessian is not importable. Torch uses its default number
    of threads. The result is written atomically to ``--out`` (default
    ``benchmarks/results/hessian.json``) and a summary table is printed.

Caveats
    Wall-clock numbers on a shared 2-core machine are noisy; the JSON records the load average
    at the start and the end. The eigenvalue and trace comparisons are single seeded runs: the
    time ratios depend on how many products each side's stopping rule used, so the ratio per
    product is the better measure of speed, the end-to-end ratio the one a user feels.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

from phasezoo.store import atomic_write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "hessian.json"
DEFAULT_MEMBER = ROOT / "data" / "zoos" / "digits-resnet18" / "mini" / "w0008_b0032_s0"

INSTALL_HINT = (
    "pyhessian is not importable; install it into the project's environment with\n"
    "    .venv/bin/python -m pip install --no-deps pyhessian\n"
    "(PyPI pyhessian 0.1; it is a benchmark-only tool, not a project dependency)"
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--member", type=Path, default=DEFAULT_MEMBER,
                   help="zoo member folder whose last checkpoint is measured (default: a trained "
                        "width-8 digits ResNet-18; a random-init one if absent)")
    p.add_argument("--batches", type=int, default=10, help="number of batches (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per batch (default %(default)s)")
    p.add_argument("--max-iter", type=int, default=100, help="maxIter on both sides (default %(default)s)")
    p.add_argument("--tol", type=float, default=1e-3, help="tol on both sides (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for data, ours, torch.manual_seed (default %(default)s)")
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per HVP (default %(default)s)")
    p.add_argument("--probe-batches", type=int, nargs="+", default=[2, 4, 8, 16],
                   help="probe counts k for the batched-HVP timings (default %(default)s)")
    p.add_argument("--fixed-probes", type=int, default=100,
                   help="probes of the fixed-count trace comparison; 0 skips it (default %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="result JSON (default benchmarks/results/hessian.json)")
    a = p.parse_args(argv)
    for name in ("batches", "batch_size", "max_iter", "reps"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.fixed_probes < 0 or min(a.probe_batches) < 1:
        p.error("--fixed-probes must be >= 0 and --probe-batches >= 1")
    return a


# ----------------------------------------------------------------------------- set-up


def load_model(member: Path, seed: int):
    import torch

    from phasezoo import build_model, load_member

    if (member / "config.json").exists():
        model, config = load_member(member, "last")
        return model, {"source": "zoo member, last checkpoint", "member": str(member.relative_to(ROOT))
                       if member.is_relative_to(ROOT) else str(member),
                       "arch": config["arch"], "width": config["width"], "batch_size": config["batch_size"],
                       "seed": config["seed"], "epochs": config["epochs"]}
    print(f"note: no zoo member at {member}; using a RANDOMLY INITIALISED ResNet-18 (width 8)",
          file=sys.stderr)
    torch.manual_seed(seed)
    model = build_model("resnet18", width=8, in_channels=1, num_classes=10)
    return model, {"source": "random initialisation (no trained member found)", "arch": "resnet18", "width": 8}


def make_batches(n_batches: int, batch_size: int, seed: int):
    import torch

    from phasezoo.data import load_dataset

    d = load_dataset("digits")
    need = n_batches * batch_size
    if need > d.num_train:
        raise SystemExit(f"{n_batches} x {batch_size} samples exceed the {d.num_train} digits train samples")
    idx = torch.randperm(d.num_train, generator=torch.Generator().manual_seed(seed))[:need]
    x, y = d.train_x[idx], d.train_y[idx]
    return [(x[i:i + batch_size].contiguous(), y[i:i + batch_size].contiguous()) for i in range(0, need, batch_size)]


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b != 0 else math.inf


# ----------------------------------------------------------------------------- measurements


def time_hvps(model, criterion, batches, reps: int, probe_batches: list[int], seed: int, pyhessian_cls) -> dict:
    import torch

    from phasezoo.landscape.hessian import DEFAULT_CHUNK_SIZE, HVP_IMPLEMENTATIONS, HessianOperator

    gen = torch.Generator().manual_seed(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    v = [torch.randn(p.shape, generator=gen) for p in params]
    h = pyhessian_cls(model, criterion, dataloader=batches, cuda=False)  # also leaves the model in eval mode
    _, py_hv = h.dataloader_hv_product(v)

    def norm(xs):
        return math.sqrt(sum(float((t.double() ** 2).sum()) for t in xs))

    rows = []
    for impl in HVP_IMPLEMENTATIONS:
        for chunk_size in (DEFAULT_CHUNK_SIZE, None):
            with HessianOperator(model, criterion, batches, hvp=impl, chunk_size=chunk_size) as op:
                t0 = time.perf_counter()
                hv = op.matvec(v)  # warm-up; builds the cached graphs
                row = {"hvp": impl, "chunk_size": op.chunk_size, "num_chunks": len(op.chunks),
                       "first_call_s": round(time.perf_counter() - t0, 4),
                       "single_s": round(_median_time(lambda: op.matvec(v), reps), 4),
                       "batched_per_probe_s": {},
                       "relative_l2_difference_vs_pyhessian": float(
                           f"{norm([a - b for a, b in zip(hv, py_hv)]) / norm(py_hv):.3g}")}
                for k in probe_batches:
                    vk = [torch.randn((k, *p.shape), generator=gen) for p in params]
                    op.matvec_batched(vk)  # warm-up
                    row["batched_per_probe_s"][str(k)] = round(_median_time(lambda: op.matvec_batched(vk), reps) / k, 4)
            rows.append(row)
            print(f"  hvp {impl}, chunk_size {chunk_size}: {row['single_s']:.3f} s, batched per probe "
                  f"{row['batched_per_probe_s']}", file=sys.stderr, flush=True)
    py = {"hvp": "pyhessian dataloader_hv_product", "chunk_size": None, "num_chunks": len(batches),
          "first_call_s": None, "single_s": round(_median_time(lambda: h.dataloader_hv_product(v), reps), 4),
          "batched_per_probe_s": {}, "relative_l2_difference_vs_pyhessian": 0.0}
    print(f"  hvp pyhessian: {py['single_s']:.3f} s", file=sys.stderr, flush=True)
    return {"rows": [*rows, py], "reps": reps, "probe_batches": probe_batches,
            "statistic": "median seconds of one product H v over all samples (batched: per probe)"}


def compare_eigenvalue(model, criterion, batches, args, pyhessian_cls) -> dict:
    import torch

    from phasezoo.landscape.hessian import top_eigenvalue

    t0 = time.perf_counter()
    ours = top_eigenvalue(model, criterion, batches, max_iter=args.max_iter, tol=args.tol, seed=args.seed)
    t_ours = time.perf_counter() - t0

    torch.manual_seed(args.seed)
    h = pyhessian_cls(model, criterion, dataloader=batches, cuda=False)
    calls = _count_products(h)
    t0 = time.perf_counter()
    eigs, _ = h.eigenvalues(maxIter=args.max_iter, tol=args.tol, top_n=1)
    t_py = time.perf_counter() - t0
    py_value, py_iters = float(eigs[0]), calls[0]
    return {
        "ours": {**ours.to_dict(), "wall_s": round(t_ours, 3), "s_per_hvp": round(t_ours / ours.iterations, 4)},
        "pyhessian": {"value": py_value, "iterations": py_iters, "wall_s": round(t_py, 3),
                      "s_per_hvp": round(t_py / py_iters, 4),
                      "converged": py_iters < args.max_iter},
        "relative_difference": _rel(ours.value, py_value),
        # pyhessian returns the previous iterate on convergence: compare like with like too
        "relative_difference_to_our_previous_iterate":
            _rel(ours.history[-2], py_value) if ours.iterations >= 2 else None,
        "time_ratio_pyhessian_over_ours": round(t_py / t_ours, 3),
        "per_hvp_ratio_pyhessian_over_ours": round((t_py / py_iters) / (t_ours / ours.iterations), 3),
    }


def _count_products(h) -> list[int]:
    """Wrap pyhessian's per-product method to count how many products a call used."""
    calls = [0]
    inner = h.dataloader_hv_product

    def counted(v):
        calls[0] += 1
        return inner(v)

    h.dataloader_hv_product = counted
    return calls


def _our_rule_stop(values: list[float], tol: float) -> int | None:
    """Probe count at which OUR (abs-fixed) rule would have stopped on this value sequence."""
    for n in range(2, len(values) + 1):
        old, new = sum(values[: n - 1]) / (n - 1), sum(values[:n]) / n
        if abs(new - old) / (abs(old) + 1e-6) < tol:
            return n
    return None


def _pyhessian_trace(h, max_iter: int, tol: float, seed: int) -> tuple[list[float], float]:
    import torch

    torch.manual_seed(seed)
    t0 = time.perf_counter()
    values = [float(x) for x in h.trace(maxIter=max_iter, tol=tol)]
    return values, time.perf_counter() - t0


def _summary_of(values: list[float]) -> dict:
    n = len(values)
    return {"value": sum(values) / n, "iterations": n,
            "stderr": statistics.stdev(values) / math.sqrt(n) if n >= 2 else None}


def compare_trace(model, criterion, batches, args, pyhessian_cls) -> dict:
    from phasezoo.landscape.hessian import trace

    t0 = time.perf_counter()
    ours = trace(model, criterion, batches, max_iter=args.max_iter, tol=args.tol, seed=args.seed)
    t_ours = time.perf_counter() - t0
    h = pyhessian_cls(model, criterion, dataloader=batches, cuda=False)
    values, t_py = _pyhessian_trace(h, args.max_iter, args.tol, args.seed)
    py = _summary_of(values)
    n = py["iterations"]
    running = [sum(values[:i]) / i for i in range(1, n + 1)]
    py_stop_by_sign_bug = n < args.max_iter and n >= 2 and running[-2] < 0
    result = {
        "ours": {**ours.to_dict(), "wall_s": round(t_ours, 3), "s_per_probe": round(t_ours / ours.iterations, 4)},
        "pyhessian": {**py, "history": values, "wall_s": round(t_py, 3), "s_per_probe": round(t_py / n, 4),
                      "converged": n < args.max_iter,
                      "stopped_by_missing_abs_bug": py_stop_by_sign_bug,
                      "our_rule_would_stop_at": _our_rule_stop(values, args.tol)},
        "relative_difference": _rel(ours.value, py["value"]),
        "difference_in_combined_stderr": _in_stderr(ours.value, ours.stderr, py["value"], py["stderr"]),
        "time_ratio_pyhessian_over_ours": round(t_py / t_ours, 3),
        "per_probe_ratio_pyhessian_over_ours": round((t_py / n) / (t_ours / ours.iterations), 3),
    }
    if args.fixed_probes:
        f = args.fixed_probes
        t0 = time.perf_counter()
        ours_f = trace(model, criterion, batches, max_iter=f, tol=0.0, seed=args.seed)
        t_of = time.perf_counter() - t0
        values_f, t_pf = _pyhessian_trace(h, f, -math.inf, args.seed)
        py_f = _summary_of(values_f)
        result["fixed_probes"] = {
            "probes": f,
            "ours": {"value": ours_f.value, "iterations": ours_f.iterations, "stderr": ours_f.stderr,
                     "wall_s": round(t_of, 3), "probe_batch": ours_f.settings["probe_batch"]},
            "pyhessian": {**py_f, "wall_s": round(t_pf, 3)},
            "relative_difference": _rel(ours_f.value, py_f["value"]),
            "difference_in_combined_stderr": _in_stderr(ours_f.value, ours_f.stderr, py_f["value"], py_f["stderr"]),
            "time_ratio_pyhessian_over_ours": round(t_pf / t_of, 3),
        }
    return result


def _in_stderr(a: float, sa: float | None, b: float, sb: float | None) -> float | None:
    if sa is None or sb is None or (sa == 0 and sb == 0):
        return None
    return round(abs(a - b) / math.sqrt(sa**2 + sb**2), 3)


# ----------------------------------------------------------------------------- output




def print_summary(p: dict, out: Path) -> None:
    s = p["settings"]
    print(f"\nhessian: {p['model']['source']} ({p['model']['arch']}, width {p['model']['width']}, "
          f"{s['num_params']} params), {s['batches']} x {s['batch_size']} digits samples, "
          f"max_iter={s['max_iter']}, tol={s['tol']}, seed={s['seed']}, cpu, {s['torch_threads']} threads, "
          f"load {s['loadavg_at_start']}")
    hv = p["hvp_timings"]
    ks = [str(k) for k in hv["probe_batches"]]
    print("\nHessian-vector product over all samples (median seconds; k=...: k probes at once, per probe):")
    print(f"  {'implementation':32s} {'chunks':>6s} {'single':>7s} " + " ".join(f"{'k=' + k:>7s}" for k in ks)
          + "  rel.diff vs pyhessian")
    for r in hv["rows"]:
        cells = " ".join(f"{r['batched_per_probe_s'][k]:7.3f}" if k in r["batched_per_probe_s"] else f"{'-':>7s}"
                         for k in ks)
        print(f"  {r['hvp']:32s} {r['num_chunks']:6d} {r['single_s']:7.3f} {cells}  "
              f"{r['relative_l2_difference_vs_pyhessian']:.1e}")
    print(f"\n{'statistic':22s} {'side':10s} {'value':>12s} {'stderr':>9s} {'iters':>6s} {'wall_s':>8s} {'s/HVP':>7s}")
    rows = [("top eigenvalue", p["top_eigenvalue"], "s_per_hvp"), ("trace", p["trace"], "s_per_probe")]
    if "fixed_probes" in p["trace"]:
        fp = p["trace"]["fixed_probes"]
        for side in ("ours", "pyhessian"):
            fp[side]["s_per_probe"] = round(fp[side]["wall_s"] / fp[side]["iterations"], 4)
        rows.append((f"trace, {fp['probes']} probes", fp, "s_per_probe"))
    for name, d, per in rows:
        for side in ("ours", "pyhessian"):
            r = d[side]
            se = "" if r.get("stderr") is None else f"{r['stderr']:.3g}"
            print(f"{name:22s} {side:10s} {r['value']:12.5g} {se:>9s} {r['iterations']:6d} {r['wall_s']:8.2f} "
                  f"{r[per]:7.3f}")
        extra = ""
        if d.get("difference_in_combined_stderr") is not None:
            extra = f", |diff| = {d['difference_in_combined_stderr']:.2f} combined stderr"
        print(f"{'':22s} ratio pyhessian/ours: time {d['time_ratio_pyhessian_over_ours']:.2f}x"
              + (f", per HVP {d['per_hvp_ratio_pyhessian_over_ours']:.2f}x" if "per_hvp_ratio_pyhessian_over_ours" in d
                 else f", per probe {d['per_probe_ratio_pyhessian_over_ours']:.2f}x"
                 if "per_probe_ratio_pyhessian_over_ours" in d else "")
              + f"; relative difference {d['relative_difference']:.2%}{extra}")
    e = p["top_eigenvalue"]
    if e.get("relative_difference_to_our_previous_iterate") is not None:
        print(f"\nnote: pyhessian returns the previous power-iteration eigenvalue on convergence, ours the newest; "
              f"pyhessian vs our previous iterate: relative difference "
              f"{e['relative_difference_to_our_previous_iterate']:.1e}")
    t = p["trace"]["pyhessian"]
    print(f"\nnote: pyhessian 0.1's trace rule lacks abs() in its denominator (stops early on a negative "
          f"running mean); here it stopped by that bug: {t['stopped_by_missing_abs_bug']}; our rule on "
          f"pyhessian's own probe values would stop at probe {t['our_rule_would_stop_at']}")
    print(f"wrote {out}")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        from pyhessian import hessian as pyhessian_cls
        import pyhessian  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=sys.stderr)
        return 2
    import torch
    import torch.nn.functional as F

    from phasezoo.landscape.hessian import DEFAULT_CHUNK_SIZE, DEFAULT_HVP, DEFAULT_PROBE_BATCH

    # pyhessian calls loss.backward(create_graph=True), which warns about a reference cycle
    warnings.filterwarnings("ignore", message=".*create_graph=True.*")
    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if loadavg and loadavg[0] > 1.5:
        print(f"warning: load average {loadavg[0]:.2f} > 1.5 at start; timings will be noisy", file=sys.stderr)

    model, model_info = load_model(args.member, args.seed)
    model.eval()
    batches = make_batches(args.batches, args.batch_size, args.seed)
    criterion = F.cross_entropy
    num_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with torch.no_grad():  # warm-up: first-call costs fall on neither side
        model(batches[0][0])

    print("timing Hessian-vector products ...", file=sys.stderr, flush=True)
    hvp = time_hvps(model, criterion, batches, args.reps, args.probe_batches, args.seed, pyhessian_cls)
    print("top eigenvalue ...", file=sys.stderr, flush=True)
    eig = compare_eigenvalue(model, criterion, batches, args, pyhessian_cls)
    print("trace ...", file=sys.stderr, flush=True)
    tr = compare_trace(model, criterion, batches, args, pyhessian_cls)
    loadavg_end = os.getloadavg() if hasattr(os, "getloadavg") else None

    import pyhessian as _ph
    from importlib.metadata import version

    payload = {
        "benchmark": "hessian",
        "settings": {
            "max_iter": args.max_iter, "tol": args.tol, "seed": args.seed,
            "batches": args.batches, "batch_size": args.batch_size, "num_params": num_params,
            "data": "digits train split, seeded permutation", "loss": "cross-entropy, size-weighted mean",
            "ours_hvp": DEFAULT_HVP, "ours_probe_batch": DEFAULT_PROBE_BATCH,
            "ours_chunk_size": DEFAULT_CHUNK_SIZE, "device": "cpu",
            "torch_threads": torch.get_num_threads(), "cpu_count": cores,
            "loadavg_at_start": [round(v, 2) for v in loadavg] if loadavg else None,
            "loadavg_at_end": [round(v, 2) for v in loadavg_end] if loadavg_end else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        },
        "versions": {
            "phasezoo": version("phasezoo"), "torch": torch.__version__,
            "pyhessian": version("pyhessian"), "pyhessian_path": str(Path(_ph.__file__).parent),
            "python": platform.python_version(), "platform": platform.platform(),
        },
        "model": model_info,
        "hvp_timings": hvp,
        "top_eigenvalue": eig,
        "trace": tr,
        "notes": [
            "pyhessian's dataloader products weight each batch's Hv by its size and divide by the "
            "sample count: the same size-weighted mean loss as ours (checked: relative_l2_difference_vs_pyhessian)",
            "pyhessian 0.1's trace stopping rule divides by (mean + 1e-6) without abs(): a negative running "
            "mean stops it after two probes; ours uses abs()",
            "pyhessian returns the previous power-iteration eigenvalue on convergence, ours the newest",
            "with the same seed on the CPU our random vectors coincide with pyhessian's (torch.randn / "
            "torch.randint(0, 2) per parameter, in order, from a generator seeded identically), so the two "
            "sides see the same start vector and the same probes; trace estimates from different probes "
            "would differ by chance: see stderr and the fixed-probe comparison",
        ],
    }
    atomic_write_json(args.out, payload)
    print_summary(payload, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
