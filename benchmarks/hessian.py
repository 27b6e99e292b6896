"""Hessian top eigenvalue and trace: ours against pyhessian 0.1, and accuracy per product.

Two parts (``--part``): ``pyhessian`` compares phasezoo.landscape.hessian and the products of
phasezoo.landscape.hvp with PyPI's pyhessian 0.1 (speed, same values); ``budget`` measures each
estimator's accuracy per Hessian-vector product against the dense Hessian of two trained
members. ``all`` (default) runs both and skips the pyhessian part, with a note, when pyhessian
is not installed.

What the pyhessian part measures
    On ONE model and ONE set of batches, in one run, on the CPU (ours with the methods
    pyhessian has: power iteration, and Hutchinson with the relative-change rule,
    ``method="hutchinson", rel_stderr=None``):

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
       ``top_eigenvalue(seed=..., method="power")`` against ``hessian(...).eigenvalues(maxIter, tol)`` after
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

Apples to apples (pyhessian part; read from pyhessian 0.1's source)
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

Model and data (pyhessian part)
    By default the trained ``last`` checkpoint of ``data/zoos/digits-resnet18/mini/
    w0008_b0032_s0`` (ResNet-18, width 8, 176 258 parameters); if that zoo member is absent a
    freshly initialised ResNet-18 (width 8, ``torch.manual_seed(seed)``) is used and the output
    says so. Data: ``--batches`` × ``--batch-size`` (10 × 64) samples of the digits train split,
    drawn without replacement with a seeded permutation (the paper's 10 batches × 64 train
    samples).

What the budget part measures
    It trains two members with the package under a temporary root (``--train-root`` keeps and
    reuses them): a digits ResNet-18 of width ``--width`` (1: 2 973 parameters;
    ``digits-resnet18.yaml``'s training, batch size 32, seed 0) and a convection PINN
    (``convection-pinn.yaml``, β ``--beta`` = 10, lr 1, the mini profile's 20 × 50 L-BFGS
    steps). For each it builds the Hessian data as ``phasezoo metrics`` does (the spec's
    ``metrics.hessian`` batches, the task's batch loss, regrouping only for per-sample-mean
    losses), forms the dense Hessian from num_params products on unit vectors
    (``HessianOperator.matvec`` or ``matvec_batched``, whichever was faster per vector;
    ``--cache-dir`` stores it), and its spectrum, trace and largest-magnitude eigenvalue. Then:

    1. **Trace**, over ``--seeds`` (30) seeds, for the previous estimator (Hutchinson, relative
       change, tol 1e-3, max_iter 100: the baseline), Hutchinson with the standard-error rule,
       Hutch++ with it for each ``--sketch-sizes`` k, and the SE-rule estimators at the
       ``--extra-max-iters`` budgets: products (median, 90th percentile), share converged,
       relative error against the dense trace (median, 90th percentile, max), the reported
       relative SE, coverage (share of seeds within 2 and 3 reported SE) and the spread of
       the estimates. These runs call ``trace_of`` on the dense Hessian (float32 products):
       the estimator code of ``trace``, without the cost of a real product per probe.
    2. **Top eigenvalue**, over ``--eig-seeds`` (10) seeds: power iteration and Lanczos for
       each ``--ncvs`` basis size at ``--tol``, products and relative error, and the products
       needed for a 1 % error (power iteration's own iterates; plain Lanczos Ritz values from
       the same start vector, i.e. ARPACK before its first restart).
    3. **Real calls** for ``--time-seeds`` (2) seeds of the baseline, Hutchinson and the default
       Hutch++, and of both eigenvalue methods at their defaults: seconds, products, and for the
       trace the agreement with the dense-operator run of the same seed.
    4. If ``curvlinops`` is importable, its fixed-budget ``hutchinson_trace``,
       ``hutchpp_trace`` and ``xtrace`` at ``--max-iter`` products on the dense Hessian (seeded
       with ``torch.manual_seed``), as a cross-check. It is not a project dependency.

How to run (from the repository root)
    .venv/bin/python benchmarks/hessian.py --part budget --threads 1   # about 12 min on 2 cores
    .venv/bin/python benchmarks/hessian.py --part budget --seeds 5 --eig-seeds 2 --time-seeds 1 \
        --extra-max-iters --sketch-sizes 10 --ncvs 10 --budget-out /tmp/b.json   # a quick look
    .venv/bin/python -m pip install --no-deps pyhessian   # once, for the pyhessian part
    .venv/bin/python benchmarks/hessian.py --part pyhessian
    .venv/bin/python benchmarks/hessian.py --part pyhessian --reps 1 --probe-batches 4 \
        --fixed-probes 10 --out /tmp/hessian.json                    # a quick look

    ``--part pyhessian`` exits with status 2 and a message if pyhessian is not importable.
    Torch uses its default number of threads unless ``--threads`` is given. Results are
    written atomically to ``--out`` (default ``benchmarks/results/hessian.json``) and
    ``--budget-out`` (``benchmarks/results/hessian_budget.json``), with a summary table.

Caveats
    Wall-clock numbers on a shared 2-core machine are noisy; the JSON records the load average
    at the start and the end. The budget part's statistics (products, errors, coverage) are
    deterministic given the seeds; its seconds are not. The eigenvalue and trace comparisons are single seeded runs: the
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

from phasezoo.executors import available_cores, processor_name
from phasezoo.store import atomic_write_json

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUT = HERE / "results" / "hessian.json"
BUDGET_OUT = HERE / "results" / "hessian_budget.json"
DEFAULT_MEMBER = ROOT / "data" / "zoos" / "digits-resnet18" / "mini" / "w0008_b0032_s0"

#: Our trace with PyHessian's estimator and (abs-fixed) rule, for the like-for-like comparison.
PYHESSIAN_RULE = {"method": "hutchinson", "rel_stderr": None}

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
                   help="result JSON of the pyhessian part (default benchmarks/results/hessian.json)")
    p.add_argument("--part", choices=("all", "pyhessian", "budget"), default="all",
                   help="pyhessian: ours against pyhessian (exit 2 without it); budget: accuracy per "
                        "product against the dense Hessian; all: both, the pyhessian part skipped "
                        "with a note if pyhessian is absent (default %(default)s)")
    b = p.add_argument_group("budget part")
    b.add_argument("--budget-out", type=Path, default=BUDGET_OUT,
                   help="result JSON (default benchmarks/results/hessian_budget.json)")
    b.add_argument("--seeds", type=int, default=30, help="trace seeds per estimator (default %(default)s)")
    b.add_argument("--eig-seeds", type=int, default=10, help="eigenvalue seeds per method (default %(default)s)")
    b.add_argument("--time-seeds", type=int, default=2,
                   help="seeds of the timed end-to-end calls per estimator (default %(default)s)")
    b.add_argument("--sketch-sizes", type=int, nargs="+", default=[5, 10, 20],
                   help="Hutch++ sketch sizes k compared (default %(default)s)")
    b.add_argument("--extra-max-iters", type=int, nargs="*", default=[300, 1000],
                   help="larger product budgets for the SE-rule estimators (default %(default)s)")
    b.add_argument("--ncvs", type=int, nargs="+", default=[5, 10, 20],
                   help="Lanczos basis sizes compared (default %(default)s)")
    b.add_argument("--width", type=int, default=1, help="digits ResNet-18 width (default %(default)s)")
    b.add_argument("--beta", type=float, default=10.0, help="PINN convection coefficient (default %(default)s)")
    b.add_argument("--dense-block", type=int, default=128,
                   help="unit vectors per batched product for the dense Hessian (default %(default)s)")
    b.add_argument("--threads", type=int, default=0, help="torch threads, both parts (default: torch's default)")
    b.add_argument("--train-root", type=Path, default=None,
                   help="keep the trained members here and reuse them (default: a temporary folder)")
    b.add_argument("--cache-dir", type=Path, default=None, help="store and reuse the dense Hessians here")
    a = p.parse_args(argv)
    for name in ("batches", "batch_size", "max_iter", "reps"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.fixed_probes < 0 or min(a.probe_batches) < 1:
        p.error("--fixed-probes must be >= 0 and --probe-batches >= 1")
    if min(a.seeds, a.eig_seeds, a.dense_block, a.width) < 1 or a.seeds < 2 or a.time_seeds < 0:
        p.error("--seeds must be >= 2, --eig-seeds, --dense-block, --width >= 1, --time-seeds >= 0")
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

    from phasezoo.landscape.hvp import DEFAULT_CHUNK_SIZE, HVP_IMPLEMENTATIONS, HessianOperator

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
    ours = top_eigenvalue(model, criterion, batches, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                          method="power")
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
    ours = trace(model, criterion, batches, max_iter=args.max_iter, tol=args.tol, seed=args.seed,
                 **PYHESSIAN_RULE)
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
        ours_f = trace(model, criterion, batches, max_iter=f, tol=0.0, seed=args.seed, **PYHESSIAN_RULE)
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


# ----------------------------------------------------------------------------- budget / accuracy


_ZOOS = ROOT / "src" / "phasezoo" / "zoos"


def train_budget_members(root: Path, width: int, beta: float) -> list[tuple]:
    """Train the two measured members with the package under ``root`` (skipped if present):
    a digits ResNet-18 (``digits-resnet18.yaml``'s training, batch size 32, seed 0) and a
    convection PINN (``convection-pinn.yaml``, the mini profile's training: 20 epochs x 50
    L-BFGS iterations, lr 1.0, seed 0)."""
    from phasezoo.spec import load_spec
    from phasezoo.store import MemberStore
    from phasezoo.zoo import train_zoo

    specs = {
        "digits": (f"extends: {_ZOOS / 'digits-resnet18.yaml'}\nname: bench-hessian-digits\nprofiles:\n"
                   f"  budget:\n    description: Hessian budget benchmark member\n"
                   f"    grid: {{width: [{width}], batch_size: [32], seed: [0]}}\n"),
        "pinn": (f"extends: {_ZOOS / 'convection-pinn.yaml'}\nname: bench-hessian-pinn\nprofiles:\n"
                 f"  budget:\n    description: Hessian budget benchmark member\n"
                 f"    grid: {{beta: [{beta:g}], lr: [1.0], seed: [0]}}\n"
                 f"    training: {{epochs: 20, lbfgs: {{max_iter: 50}}}}\n"),
    }
    out = []
    for label, text in specs.items():
        path = root / f"{label}.yaml"
        path.write_text(text)
        t0 = time.perf_counter()
        train_zoo(path, "budget", root / "zoos", device="cpu", workers=1, progress=False)  # [] if trained
        (member,) = load_spec(path).members("budget")
        ms = MemberStore(root / "zoos" / f"bench-hessian-{label}" / "budget" / member.member)
        train_loss = ms.read_results()[-1]["train_loss"]
        print(f"  {label} member {member.member} ready ({time.perf_counter() - t0:.1f} s): train loss "
              f"{train_loss:.4g}", file=sys.stderr, flush=True)
        out.append((label, ms.dir, path, train_loss))
    return out


def member_problem(member_dir: Path, spec_path: Path):
    """Model, loss and batches exactly as ``phasezoo metrics`` builds them for the Hessian
    (the spec's ``metrics.hessian`` batches, the task's batch loss, regrouping only for
    per-sample-mean losses)."""
    from phasezoo.data import load_dataset
    from phasezoo.landscape.hvp import DEFAULT_CHUNK_SIZE
    from phasezoo.data import fixed_subset
    from phasezoo.spec import load_spec
    from phasezoo.tasks import task_for
    from phasezoo.store import load_member

    model, config = load_member(member_dir, "last")
    data = load_dataset(config["dataset"])
    settings = load_spec(spec_path).profile(config["profile"]).metrics["hessian"]
    bs, nb = settings["batch_size"], settings["num_batches"]
    x, y = fixed_subset(data.train_x, data.train_y, bs * nb)
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(x), bs)]
    task = task_for(config)
    chunk = DEFAULT_CHUNK_SIZE if task.per_sample_mean else None
    return model, config, task.batch_loss, batches, chunk


def dense_hessian(op, block: int):
    """H (float64, symmetrised) from products with unit vectors, ``block`` at a time."""
    import torch

    from phasezoo.landscape.hvp import flatten, matvecs, unflatten

    d = op.num_params
    cols = []
    for start in range(0, d, block):
        idx = range(start, min(start + block, d))
        e = torch.zeros(len(idx), d, dtype=torch.float64)
        for j, i in enumerate(idx):
            e[j, i] = 1.0
        vs = [unflatten(row, op.params) for row in e]
        cols.extend(flatten(h, torch.float64) for h in matvecs(op, vs, block))
    h = torch.stack(cols, dim=1)
    asym = float((h - h.T).abs().max() / h.abs().max())
    return (h + h.T) / 2, asym


class DenseOperator:
    """The estimators' operator protocol on a stored matrix (float32 products, like the real ones)."""

    def __init__(self, h, op):
        self.h = h.float()
        self.params = op.params
        self.num_params = op.num_params
        self.num_samples, self.num_batches = op.num_samples, op.num_batches
        self.chunk_size, self.chunks, self.hvp = op.chunk_size, op.chunks, "dense"

    def matvec(self, v):
        from phasezoo.landscape.hvp import flatten, unflatten

        return unflatten(self.h @ flatten(v, self.h.dtype), self.params)

    def matvec_batched(self, v):
        import torch

        x = torch.cat([t.reshape(t.shape[0], -1).to(self.h.dtype) for t in v], dim=1)  # (k, d)
        y = (self.h @ x.T).T
        out, start = [], 0
        for p in self.params:
            out.append(y[:, start:start + p.numel()].reshape(-1, *p.shape).to(p.dtype))
            start += p.numel()
        return out


def _quantile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    pos = q * (len(s) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _trace_configs(max_iter: int, sketch_sizes: list[int], default_k: int,
                   extra_max_iters: list[int]) -> list[dict]:
    from phasezoo.landscape.hessian import DEFAULT_MIN_PROBES, DEFAULT_REL_STDERR

    se = {"rel_stderr": DEFAULT_REL_STDERR, "min_probes": DEFAULT_MIN_PROBES}
    configs = [
        {"name": "baseline: hutchinson, relative change tol 1e-3", "method": "hutchinson",
         "rel_stderr": None, "tol": 1e-3, "max_iter": max_iter},
        {"name": "hutchinson, SE rule", "method": "hutchinson", **se, "max_iter": max_iter},
    ]
    for k in sketch_sizes:
        configs.append({"name": f"hutchpp k={k}, SE rule", "method": "hutchpp", **se, "sketch_size": k,
                        "max_iter": max_iter})
    for m in extra_max_iters:
        configs += [
            {"name": f"hutchinson, SE rule, max_iter {m}", "method": "hutchinson", **se, "max_iter": m},
            {"name": f"hutchpp k={default_k}, SE rule, max_iter {m}", "method": "hutchpp", **se,
             "sketch_size": default_k, "max_iter": m},
        ]
    return configs


def _call_kwargs(c: dict) -> dict:
    return {k: v for k, v in c.items() if k != "name"}


def trace_statistics(dense, tr: float, configs: list[dict], seeds: int, probe_batch: int) -> list[dict]:
    """Each config over ``seeds`` seeds on the dense operator: products, errors, SE, coverage."""
    from phasezoo.landscape.hessian import trace_of

    rows = []
    for c in configs:
        ests = [trace_of(dense, seed=s, probe_batch=probe_batch, **_call_kwargs(c)) for s in range(seeds)]
        err = [abs(e.value - tr) / abs(tr) for e in ests]
        z = [abs(e.value - tr) / e.stderr if e.stderr else math.inf for e in ests]
        values = [e.value for e in ests]
        prods = [e.iterations for e in ests]
        rows.append({
            **c, "seeds": seeds,
            "products_median": statistics.median(prods), "products_p90": _quantile(prods, 0.9),
            "products_max": max(prods),
            "converged_share": sum(e.converged for e in ests) / seeds,
            "rel_error_median": statistics.median(err), "rel_error_p90": _quantile(err, 0.9),
            "rel_error_max": max(err),
            "reported_rel_stderr_median": statistics.median(e.stderr / abs(e.value) for e in ests if e.stderr),
            "coverage_2se": sum(x <= 2 for x in z) / seeds, "coverage_3se": sum(x <= 3 for x in z) / seeds,
            "spread_std_over_trace": statistics.stdev(values) / abs(tr),
            "spread_range_over_trace": (max(values) - min(values)) / abs(tr),
            "values": values, "stderrs": [e.stderr for e in ests], "products": prods,
        })
        r = rows[-1]
        print(f"    {c['name']:44s} products {r['products_median']:6.1f} (p90 {r['products_p90']:6.1f}) "
              f"err med {r['rel_error_median']:.3f} p90 {r['rel_error_p90']:.3f}  "
              f"relSE {r['reported_rel_stderr_median']:.3f} "
              f"cov3 {r['coverage_3se']:.2f} cov2 {r['coverage_2se']:.2f} conv {r['converged_share']:.2f}",
              file=sys.stderr, flush=True)
    return rows


def curvlinops_crosscheck(h, tr: float, seeds: int, num_matvecs: int) -> dict | None:
    """curvlinops' fixed-budget estimators on the dense Hessian (if importable), same budget."""
    try:
        import curvlinops
    except ImportError:
        return None
    import torch
    from importlib.metadata import version

    out: dict = {"version": version("curvlinops-for-pytorch"), "num_matvecs": num_matvecs}
    a = h.float()
    for name in ("hutchinson_trace", "hutchpp_trace", "xtrace"):
        fn = getattr(curvlinops, name, None)
        if fn is None:
            continue
        m = num_matvecs - num_matvecs % (3 if name == "hutchpp_trace" else 2 if name == "xtrace" else 1)
        errs = []
        for s in range(seeds):
            torch.manual_seed(s)
            errs.append(abs(float(fn(a, m)) - tr) / abs(tr))
        out[name] = {"num_matvecs": m, "rel_error_median": statistics.median(errs),
                     "rel_error_p90": _quantile(errs, 0.9)}
    return out


def lanczos_curve(h, v0, steps: int) -> list[float]:
    """Largest-magnitude Ritz value after m = 1..steps plain Lanczos steps from v0 (full
    reorthogonalisation, float64): what ARPACK computes before its first restart."""
    import torch

    q = [v0 / v0.norm()]
    alpha, beta, out = [], [], []
    for m in range(steps):
        w = h @ q[-1]
        alpha.append(float(q[-1] @ w))
        w = w - alpha[-1] * q[-1] - (beta[-1] * q[-2] if beta else 0)
        for u in q:  # full reorthogonalisation
            w = w - (u @ w) * u
        t = torch.diag(torch.tensor(alpha, dtype=torch.float64))
        if beta:
            b = torch.tensor(beta, dtype=torch.float64)
            t = t + torch.diag(b, 1) + torch.diag(b, -1)
        theta = torch.linalg.eigvalsh(t)
        out.append(float(theta[theta.abs().argmax()]))
        nb = float(w.norm())
        if nb < 1e-12 or m == steps - 1:
            break
        beta.append(nb)
        q.append(w / nb)
    return out


def eig_statistics(dense, h, lam: float, seeds: int, tol: float, max_iter: int, ncvs: list[int]) -> dict:
    import torch

    from phasezoo.landscape.hessian import top_eigenvalue_of
    from phasezoo.landscape.hvp import flatten, gaussian

    configs = [{"method": "power", "tol": tol}] + [{"method": "lanczos", "tol": tol, "ncv": n} for n in ncvs]
    rows = []
    for c in configs:
        ests = [top_eigenvalue_of(dense, seed=s, max_iter=max_iter, **c) for s in range(seeds)]
        err = [abs(e.value - lam) / abs(lam) for e in ests]
        prods = [e.iterations for e in ests]
        rows.append({**c, "max_iter": max_iter, "seeds": seeds,
                     "products_median": statistics.median(prods), "products_max": max(prods),
                     "converged_share": sum(e.converged for e in ests) / seeds,
                     "rel_error_median": statistics.median(err), "rel_error_max": max(err),
                     "share_within_1pct": sum(x <= 0.01 for x in err) / seeds,
                     "sign_correct_share": sum((e.value > 0) == (lam > 0) for e in ests) / seeds})
        r = rows[-1]
        print(f"    eig {c['method']:8s} ncv {c.get('ncv', '-')!s:3s} products {r['products_median']:5.1f} "
              f"(max {r['products_max']}) err med {r['rel_error_median']:.2e} max {r['rel_error_max']:.2e} "
              f"conv {r['converged_share']:.2f}", file=sys.stderr, flush=True)
    # products to reach <= 1% error: power iteration's own iterates, and plain Lanczos' Ritz values
    to_1pct = {"power": [], "lanczos": []}
    for s in range(seeds):
        long = top_eigenvalue_of(dense, seed=s, max_iter=max_iter, tol=0.0, method="power")
        to_1pct["power"].append(next((i + 1 for i, x in enumerate(long.history)
                                      if abs(x - lam) <= 0.01 * abs(lam)), None))
        v0 = flatten(gaussian(dense.params, torch.Generator().manual_seed(s)), torch.float64)
        curve = lanczos_curve(h, v0, max_iter)
        to_1pct["lanczos"].append(next((i + 1 for i, x in enumerate(curve) if abs(x - lam) <= 0.01 * abs(lam)), None))
    return {"rows": rows, "products_to_1pct_error": to_1pct,
            "products_to_1pct_error_median": {k: statistics.median([x if x is not None else math.inf for x in v])
                                              for k, v in to_1pct.items()}}


def timed_real_runs(model, loss_fn, batches, chunk, tr: float, lam: float, configs: list[dict],
                    dense_rows: list[dict], seeds: int, eig_tol: float, max_iter: int) -> dict:
    """The real calls (model, Hessian-vector products) for a few seeds: seconds, and agreement
    with the dense-operator runs of the same seeds."""
    from phasezoo.landscape.hessian import DEFAULT_LANCZOS_NCV, top_eigenvalue, trace

    out = {"trace": [], "top_eigenvalue": []}
    for c, dense_row in zip(configs, dense_rows):
        for s in range(seeds):
            t0 = time.perf_counter()
            e = trace(model, loss_fn, batches, seed=s, chunk_size=chunk, **_call_kwargs(c))
            out["trace"].append({"name": c["name"], "seed": s, "wall_s": round(time.perf_counter() - t0, 3),
                                 "products": e.iterations, "value": e.value, "stderr": e.stderr,
                                 "rel_error": abs(e.value - tr) / abs(tr),
                                 "rel_diff_vs_dense_operator": _rel(e.value, dense_row["values"][s]),
                                 "same_products_as_dense_operator": e.iterations == dense_row["products"][s]})
    for method in ("power", "lanczos"):
        for s in range(seeds):
            t0 = time.perf_counter()
            e = top_eigenvalue(model, loss_fn, batches, seed=s, chunk_size=chunk, max_iter=max_iter, tol=eig_tol,
                               method=method)
            out["top_eigenvalue"].append({"method": method, "seed": s, "wall_s": round(time.perf_counter() - t0, 3),
                                          "products": e.iterations, "value": e.value,
                                          "rel_error": abs(e.value - lam) / abs(lam),
                                          "ncv": e.settings.get("ncv", DEFAULT_LANCZOS_NCV if method == "lanczos"
                                                                else None)})
    return out


def budget_benchmark(args) -> dict:
    import tempfile

    import torch

    from phasezoo.landscape.hessian import DEFAULT_SKETCH_SIZE
    from phasezoo.landscape.hvp import HessianOperator

    keep = args.train_root is not None
    root = Path(args.train_root) if keep else Path(tempfile.mkdtemp(prefix="bench-hessian-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"training the two members under {root} ...", file=sys.stderr, flush=True)
    members = train_budget_members(root, args.width, args.beta)
    results = []
    for label, member_dir, spec_path, train_loss in members:
        model, config, loss_fn, batches, chunk = member_problem(member_dir, spec_path)
        with HessianOperator(model, loss_fn, batches, chunk_size=chunk) as op:
            v = [torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) for p in op.params]
            op.matvec(v)
            s_single = _median_time(lambda: op.matvec(v), 3)
            vk = [torch.stack([t] * args.dense_block) for t in v]
            op.matvec_batched(vk)
            s_block = _median_time(lambda: op.matvec_batched(vk), 1) / args.dense_block
            block = args.dense_block if s_block < s_single else 1
            cache = Path(args.cache_dir) / f"{label}-{member_dir.name}-{op.num_params}.pt" if args.cache_dir else None
            cached = cache is not None and cache.exists()
            if cached:
                stored = torch.load(cache)
                h, asym, t_dense = stored["h"], stored["asymmetry"], stored["build_s"]
            else:
                print(f"  {label}: dense Hessian from {op.num_params} products (block {block}) ...",
                      file=sys.stderr, flush=True)
                t0 = time.perf_counter()
                h, asym = dense_hessian(op, block)
                t_dense = time.perf_counter() - t0
                if cache is not None:
                    cache.parent.mkdir(parents=True, exist_ok=True)
                    torch.save({"h": h, "asymmetry": asym, "build_s": t_dense}, cache)
            dense = DenseOperator(h, op)
        eig = torch.linalg.eigvalsh(h)
        lam = float(eig[eig.abs().argmax()])
        tr = float(torch.trace(h))
        order = eig.abs().argsort(descending=True)
        fro2 = float((eig**2).sum())
        probe_var = 2 * (float((h**2).sum()) - float((h.diagonal() ** 2).sum()))
        spectrum = {
            "num_params": op.num_params, "trace": tr, "top_eigenvalue": lam,
            "top10_eigenvalues": [float(eig[i]) for i in order[:10]],
            "second_over_first": float(eig[order[1]] / eig[order[0]]),
            "negative_eigenvalue_sum": float(eig[eig < 0].sum()),
            "frobenius_share_top10": float((eig[order[:10]] ** 2).sum()) / fro2,
            "frobenius_share_top20": float((eig[order[:20]] ** 2).sum()) / fro2,
            "hutchinson_probe_std": math.sqrt(probe_var),
            "hutchinson_probes_for_5pct_se": probe_var / (0.05 * tr) ** 2,
            "dense_build_s": round(t_dense, 1), "dense_from_cache": cached, "dense_block": block,
            "dense_asymmetry_rel": asym,
            "s_per_product_single": round(s_single, 4), "s_per_product_batched": round(s_block, 4),
        }
        print(f"  {label}: {op.num_params} params, trace {tr:.5g}, top eig {lam:.5g} (2nd/1st "
              f"{spectrum['second_over_first']:.3f}), top-10 share of |H|_F^2 "
              f"{spectrum['frobenius_share_top10']:.2f}; Hutchinson needs ~"
              f"{spectrum['hutchinson_probes_for_5pct_se']:.0f} probes for 5% SE; {s_single:.3f} s/product",
              file=sys.stderr, flush=True)
        configs = _trace_configs(args.max_iter, args.sketch_sizes, DEFAULT_SKETCH_SIZE, args.extra_max_iters)
        stats = trace_statistics(dense, tr, configs, args.seeds, probe_batch=32)
        eigs = eig_statistics(dense, h, lam, args.eig_seeds, args.tol, args.max_iter, args.ncvs)
        default_names = {"baseline: hutchinson, relative change tol 1e-3", "hutchinson, SE rule",
                         f"hutchpp k={DEFAULT_SKETCH_SIZE}, SE rule"}
        timed_configs = [c for c in configs if c["name"] in default_names]
        timed_rows = [r for r in stats if r["name"] in default_names]
        print(f"  {label}: timed real runs ...", file=sys.stderr, flush=True)
        real = timed_real_runs(model, loss_fn, batches, chunk, tr, lam, timed_configs, timed_rows,
                               args.time_seeds, args.tol, args.max_iter)
        results.append({
            "label": label, "member": member_dir.name,
            "model": {"arch": config["arch"], "width": config.get("width"), "beta": config.get("beta"),
                      "lr": config.get("lr"), "batch_size": config.get("batch_size"), "seed": config["seed"],
                      "epochs": config["epochs"]},
            "final_train_loss": train_loss,
            "hessian_data": {"num_batches": len(batches), "batch_size": len(batches[0][0]), "chunk_size": chunk},
            "spectrum": spectrum, "trace": stats, "top_eigenvalue": eigs, "real_runs": real,
            "curvlinops": curvlinops_crosscheck(h, tr, args.seeds, args.max_iter),
        })
    if not keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return {"members": results}


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


def pyhessian_part(args, argv, pyhessian_cls) -> None:
    import torch
    import torch.nn.functional as F

    from phasezoo.landscape.hvp import DEFAULT_CHUNK_SIZE, DEFAULT_HVP, DEFAULT_PROBE_BATCH

    # pyhessian calls loss.backward(create_graph=True), which warns about a reference cycle
    warnings.filterwarnings("ignore", message=".*create_graph=True.*")
    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else None
    cores = available_cores()
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



def machine_info() -> dict:
    import torch

    loadavg = os.getloadavg() if hasattr(os, "getloadavg") else None
    cores = available_cores()
    return {"machine": platform.machine(), "processor": processor_name("cpu"), "cpu_count": cores,
            "torch_threads": torch.get_num_threads(),
            "loadavg": [round(v, 2) for v in loadavg] if loadavg else None,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}


def budget_part(args, argv) -> None:
    import scipy
    import torch
    from importlib.metadata import version

    from phasezoo.landscape import hessian as hs
    from phasezoo.landscape.hvp import DEFAULT_HVP

    start = machine_info()
    if start["loadavg"] and start["loadavg"][0] > 1.5:
        print(f"warning: load average {start['loadavg'][0]:.2f} > 1.5 at start; timings will be noisy",
              file=sys.stderr)
    t0 = time.perf_counter()
    result = budget_benchmark(args)
    payload = {
        "benchmark": "hessian_budget",
        "settings": {
            "seeds": args.seeds, "eig_seeds": args.eig_seeds, "time_seeds": args.time_seeds,
            "max_iter": args.max_iter, "eig_tol": args.tol, "sketch_sizes": args.sketch_sizes,
            "extra_max_iters": args.extra_max_iters, "ncvs": args.ncvs, "width": args.width, "beta": args.beta,
            "rel_stderr": hs.DEFAULT_REL_STDERR, "min_probes": hs.DEFAULT_MIN_PROBES,
            "default_trace_method": hs.DEFAULT_TRACE_METHOD, "default_eig_method": hs.DEFAULT_EIG_METHOD,
            "default_sketch_size": hs.DEFAULT_SKETCH_SIZE, "default_lanczos_ncv": hs.DEFAULT_LANCZOS_NCV,
            "hvp": DEFAULT_HVP, "device": "cpu",
            "statistics_operator": "the dense Hessian (float32 products) through trace_of / top_eigenvalue_of; "
                                   "seconds from the real calls (real_runs)",
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        },
        "machine_at_start": start,
        "machine_at_end": machine_info(),
        "wall_s": round(time.perf_counter() - t0, 1),
        "versions": {"phasezoo": version("phasezoo"), "torch": torch.__version__, "scipy": scipy.__version__,
                     "python": platform.python_version(), "platform": platform.platform()},
        **result,
    }
    atomic_write_json(args.budget_out, payload)
    print_budget_summary(payload, args.budget_out)


def print_budget_summary(p: dict, out: Path) -> None:
    for m in p["members"]:
        sp = m["spectrum"]
        print(f"\n{m['label']}: {m['model']['arch']} {m['member']}, {sp['num_params']} params, train loss "
              f"{m['final_train_loss']:.3g}; trace {sp['trace']:.5g}, top eigenvalue {sp['top_eigenvalue']:.5g}")
        real = {}
        for r in m["real_runs"]["trace"]:
            real.setdefault(r["name"], []).append(r)
        print(f"  {'trace estimator':46s} {'products':>9s} {'p90':>5s} {'s (real)':>9s} {'err med':>8s} "
              f"{'err p90':>8s} {'rel SE':>7s} {'cov 2SE':>8s} {'cov 3SE':>8s} {'conv':>5s}")
        for r in m["trace"]:
            secs = statistics.median(x["wall_s"] for x in real[r["name"]]) if r["name"] in real else None
            print(f"  {r['name']:46s} {r['products_median']:9.1f} {r['products_p90']:5.0f} "
                  f"{'' if secs is None else f'{secs:.2f}':>9s} {r['rel_error_median']:8.3f} {r['rel_error_p90']:8.3f} "
                  f"{r['reported_rel_stderr_median']:7.3f} {r['coverage_2se']:8.2f} {r['coverage_3se']:8.2f} "
                  f"{r['converged_share']:5.2f}")
        e = m["top_eigenvalue"]
        print(f"  {'eigenvalue method':22s} {'products':>9s} {'err med':>9s} {'err max':>9s} {'conv':>5s}")
        for r in e["rows"]:
            print(f"  {r['method'] + (' ncv ' + str(r['ncv']) if 'ncv' in r else ''):22s} {r['products_median']:9.1f} "
                  f"{r['rel_error_median']:9.2e} {r['rel_error_max']:9.2e} {r['converged_share']:5.2f}")
        print(f"  products to <= 1% error (median): {e['products_to_1pct_error_median']}")
        for r in m["real_runs"]["top_eigenvalue"]:
            print(f"  real {r['method']:8s} seed {r['seed']}: {r['products']} products, {r['wall_s']:.2f} s, "
                  f"error {r['rel_error']:.1e}")
    print(f"wrote {out}")


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.part in ("all", "pyhessian"):
        try:
            from pyhessian import hessian as pyhessian_cls
        except ImportError:
            print(INSTALL_HINT, file=sys.stderr)
            if args.part == "pyhessian":
                return 2
            print("note: skipping the pyhessian part", file=sys.stderr)
        else:
            pyhessian_part(args, argv, pyhessian_cls)
    if args.part in ("all", "budget"):
        budget_part(args, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
