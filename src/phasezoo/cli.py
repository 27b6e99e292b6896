"""The ``phasezoo`` command: plan, train, inspect and export zoos.

Every subcommand is a thin wrapper around a function of the package (``phasezoo.zoo``,
``phasezoo.spec``, ``phasezoo.export``). Errors a user can fix are printed as one line
(``phasezoo: error: ...``) with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from phasezoo.errors import PhaseZooError

EXIT_USAGE = 2


def _add_zoo_args(p: argparse.ArgumentParser, *, root: bool = True) -> None:
    p.add_argument("zoo", help="zoo name (see `phasezoo zoos`) or path to a zoo YAML file")
    p.add_argument("--profile", "-p", default="mini", help="profile: paper, mini or smoke (default: mini)")
    if root:
        p.add_argument("--root", default="data/zoos", type=Path,
                       help="folder that holds the zoos (default: data/zoos)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of the commands that run models: train, metrics, downstream."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    p.add_argument("--workers", type=int, default=1, help="parallel local worker processes (default 1)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="dataset root (default: $PHASEZOO_DATA or ~/.cache/phasezoo/datasets)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phasezoo",
        description="Model zoos on phase transitions: plan, train, inspect and export zoos.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("zoos", help="list the zoos and their profiles")

    p = sub.add_parser("plan", help="list the member configs of a zoo profile")
    _add_zoo_args(p, root=False)
    p.add_argument("--json", action="store_true", help="print the configs as one JSON list")

    p = sub.add_parser("train", help="train a zoo (finished members are skipped, partial ones resumed)")
    _add_zoo_args(p)
    _add_run_args(p)

    p = sub.add_parser("status", help="count done, partial, pending and diverged members")
    _add_zoo_args(p)

    p = sub.add_parser("table", help="one row per member: config and results at an epoch")
    _add_zoo_args(p)
    p.add_argument("--epoch", default="last", help="'last' (default) or an epoch number")
    p.add_argument("--csv", default=None, help="write CSV to this file ('-' for stdout)")

    p = sub.add_parser("metrics", help="compute loss-landscape metrics (Hessian, CKA, mode connectivity)")
    _add_zoo_args(p)
    p.add_argument("--epoch", default="last", help="'last' (default) or a checkpoint epoch")
    _add_run_args(p)

    p = sub.add_parser("phases", help="the phase map of a zoo and its sensitivity to the thresholds")
    _add_zoo_args(p)
    p.add_argument("--epoch", default="last", help="'last' (default) or a checkpoint epoch")

    p = sub.add_parser("downstream", help="pruning, Wise-FT, fine-tuning, ensembling, re-basin averaging")
    _add_zoo_args(p)
    _add_run_args(p)

    p = sub.add_parser("probe", help="weight-statistics probe: R² per property on held-out cells")
    _add_zoo_args(p)
    p.add_argument("--epoch", default="last", help="'last' (default) or a checkpoint epoch")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/test split of grid cells")
    p.add_argument("--csv", default=None, help="also write the per-property table as CSV ('-': stdout)")

    p = sub.add_parser("summary", help="Tables 5-7: mean ± std [min, max] of the final metrics per zoo")
    p.add_argument("zoos", nargs="+", metavar="zoo", help="zoo names or YAML paths")
    p.add_argument("--profile", "-p", default="mini", help="profile: paper, mini or smoke (default: mini)")
    p.add_argument("--root", type=Path, default=Path("data/zoos"), help="folder that holds the zoos (default: data/zoos)")
    p.add_argument("--csv", default=None, help="write CSV to this file ('-' for stdout)")

    p = sub.add_parser("notebook", help="run one of the book's notebooks with other parameters (papermill)")
    p.add_argument("name", help="notebook name in notebooks/ (e.g. 02_phases) or a path to a .py notebook")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override a value of the notebook's parameters cell (repeatable)")
    p.add_argument("--out", type=Path, default=None,
                   help="executed notebook (default: notebooks/_runs/<name>.ipynb)")

    p = sub.add_parser("book", help="execute every notebook for these zoos into book/ and build the Jupyter Book")
    p.add_argument("zoos", nargs="+", metavar="zoo", help="trained and measured zoos (names or YAML paths)")
    p.add_argument("--profile", "-p", default="mini", help="profile: paper, mini or smoke (default: mini)")
    p.add_argument("--root", type=Path, default=Path("data/zoos"), help="folder that holds the zoos (default: data/zoos)")
    p.add_argument("--book", type=Path, default=Path("book"), help="the book folder (default: book)")
    p.add_argument("--device", default="auto", help="device the notebooks may use (default: auto)")
    p.add_argument("--workers", type=int, default=2, help="notebooks executed at a time (default 2)")
    p.add_argument("--no-build", action="store_true", help="execute the notebooks only, do not run jupyter-book")

    p = sub.add_parser("export", help="export a zoo to another on-disk layout")
    _add_zoo_args(p)
    p.add_argument("--to", required=True, type=Path, help="destination folder (must not exist, or be empty)")
    p.add_argument("--format", default="ptmz", choices=["ptmz"],
                   help="ptmz: the authors' ray.tune layout (params.json, result.json, checkpoint_*)")
    return parser


def _epoch_arg(value: str) -> int | str:
    if value == "last":
        return value
    try:
        epoch = int(value)
    except ValueError:
        raise PhaseZooError(f"--epoch must be 'last' or a non-negative integer, got {value!r}") from None
    if epoch < 0:
        raise PhaseZooError(f"--epoch must be 'last' or a non-negative integer, got {value!r}")
    return epoch


def _write_csv(df, csv: str | None) -> bool:
    """Write ``df`` as CSV to stdout (``-``) or atomically to a file; False when ``csv`` is None."""
    if csv is None:
        return False
    if csv == "-":
        df.to_csv(sys.stdout, index=False)
    else:
        from phasezoo.store import atomic_write_bytes

        atomic_write_bytes(Path(csv), df.to_csv(index=False).encode())
        print(f"wrote {len(df)} rows to {csv}")
    return True


def _check_profile(spec, profile: str) -> None:
    spec.profile(profile)  # raises a one-line SpecError naming the valid profiles


def _load_specs(zoos: list[str], profile: str) -> list:
    """The specs of several zoos, each checked to have ``profile`` (commands over many zoos)."""
    from phasezoo.spec import load_spec

    specs = [load_spec(z) for z in zoos]
    for spec in specs:
        _check_profile(spec, profile)
    return specs


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Imports are deferred so that `phasezoo --help` and `phasezoo zoos` stay quick.
    from phasezoo.spec import list_zoos, load_spec, plan_json

    if args.command == "zoos":
        for name in list_zoos():
            spec = load_spec(name)
            sizes = ", ".join(f"{p} ({prof.size})" for p, prof in spec.profiles.items())
            print(f"{name:24s} {spec.description}\n{'':24s} profiles: {sizes}")
        return 0

    if args.command == "notebook":
        from phasezoo.notebooks import find_notebook, parse_parameters, run_notebook

        source = find_notebook(args.name)
        out = args.out or Path("notebooks/_runs") / f"{source.stem}.ipynb"
        run_notebook(source, out, parse_parameters(args.parameter))
        print(f"wrote {out}")
        return 0

    if args.command == "book":
        import time

        from phasezoo.book import build_html, execute_pages

        _load_specs(args.zoos, args.profile)
        if args.workers < 1:
            raise PhaseZooError(f"--workers must be at least 1, got {args.workers}")
        start = time.perf_counter()
        execute_pages(args.zoos, args.profile, args.root, book_dir=args.book, device=args.device,
                      workers=args.workers)
        print(f"stage notebooks: {time.perf_counter() - start:.0f} s")
        if not args.no_build:
            start = time.perf_counter()
            index = build_html(args.book)
            print(f"stage jupyter-book: {time.perf_counter() - start:.0f} s; open {index}")
        return 0

    if args.command == "summary":
        from phasezoo.report import summary_table

        specs = _load_specs(args.zoos, args.profile)
        table = summary_table(specs, args.profile, args.root)
        if not _write_csv(table, args.csv):
            print(table.to_string(index=False))
        return 0

    spec = load_spec(args.zoo)
    _check_profile(spec, args.profile)

    if args.command == "plan":
        if args.json:
            print(plan_json(spec, args.profile))
        else:
            for m in spec.members(args.profile):
                beta = f" beta={m.beta:g}" if m.beta is not None else ""
                print(f"{m.member}  width={m.width} batch_size={m.batch_size} seed={m.seed}{beta} "
                      f"{m.optimizer} lr={m.lr:g} epochs={m.epochs}")
        return 0

    from phasezoo import zoo as zoo_ops

    if args.command == "train":
        results = zoo_ops.train_zoo(spec, args.profile, args.root, device=args.device,
                                    workers=args.workers, data_dir=args.data_dir)
        counts = zoo_ops.zoo_status(spec, args.profile, args.root)
        trained = sum(r.epochs_run for r in results)
        print(f"{spec.name}/{args.profile}: trained {trained} epochs in {len(results)} members; "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    if args.command == "status":
        counts = zoo_ops.zoo_status(spec, args.profile, args.root)
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        return 0

    if args.command == "table":
        df = zoo_ops.zoo_table(spec, args.profile, args.root, epoch=_epoch_arg(args.epoch))
        if not _write_csv(df, args.csv):
            import pandas as pd

            with pd.option_context("display.max_rows", None, "display.width", 200,
                                   "display.float_format", "{:.4g}".format):
                print(df.drop(columns=["arch", "dataset"]).to_string(index=False))
        return 0

    if args.command == "metrics":
        if args.workers < 1:
            raise PhaseZooError(f"--workers must be at least 1, got {args.workers}")
        from phasezoo.metrics import compute_metrics

        info = compute_metrics(spec, args.profile, args.root, epoch=_epoch_arg(args.epoch),
                               device=args.device, workers=args.workers, data_dir=args.data_dir)
        print(f"{spec.name}/{args.profile} epoch {info['epoch']}: computed {info['tasks']} metric tasks "
              f"in {info['wall_s']:.1f} s (Hessian {info['hessian_task_s']:.1f} s, "
              f"CKA + mode connectivity {info['pair_task_s']:.1f} s of worker time)")
        return 0

    if args.command == "phases":
        from phasezoo.report import phase_report

        print(phase_report(spec, args.profile, args.root, epoch=_epoch_arg(args.epoch)))
        return 0

    if args.command == "downstream":
        if args.workers < 1:
            raise PhaseZooError(f"--workers must be at least 1, got {args.workers}")
        from phasezoo.downstream.runner import run_downstream

        info = run_downstream(spec, args.profile, args.root, device=args.device,
                              workers=args.workers, data_dir=args.data_dir)
        print(f"{spec.name}/{args.profile} epoch {info['epoch']}: ran {info['tasks']} downstream tasks "
              f"in {info['wall_s']:.1f} s")
        return 0

    if args.command == "probe":
        from phasezoo.wsl.probe import zoo_probe

        props, phase = zoo_probe(spec, args.profile, args.root, epoch=_epoch_arg(args.epoch),
                                 seed=args.seed)
        cols = [c for c in ("property", "r2_test", "r2_train", "kendall_tau_test", "alpha",
                            "n_train", "n_test", "note") if c in props]
        if args.csv == "-":
            props[cols].to_csv(sys.stdout, index=False)
            return 0
        if args.csv:
            from phasezoo.store import atomic_write_bytes

            atomic_write_bytes(Path(args.csv), props[cols].to_csv(index=False).encode())
        import pandas as pd

        with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
            print(f"{spec.name}/{args.profile}: linear probe on weight statistics, R² on held-out grid cells")
            print(props[cols].to_string(index=False))
        if "accuracy_test" in phase:
            print(f"phase label: accuracy {phase['accuracy_test']:.3f} on {phase['n_test']} held-out "
                  f"members, majority baseline {phase['baseline_accuracy']:.3f} "
                  f"(majority class {phase['majority_class']})")
        else:
            print(f"phase label: {phase.get('note')}")
        return 0

    if args.command == "export":
        from phasezoo.export import export_ptmz

        n = export_ptmz(spec, args.profile, args.root, args.to)
        print(f"exported {n} members to {args.to} (format {args.format})")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> None:
    try:
        code = run(argv)
    except PhaseZooError as e:
        print(f"phasezoo: error: {e}", file=sys.stderr)
        code = EXIT_USAGE
    except KeyboardInterrupt:
        print("phasezoo: interrupted; rerun the same command to resume", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # the reader of our stdout went away (`phasezoo table --csv - | head`): not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    main()
