"""The ``phasezoo`` command: plan, train, inspect and export zoos.

Every subcommand is a thin wrapper around a function of the package (``phasezoo.zoo``,
``phasezoo.spec``, ``phasezoo.publish.ptmz``). Errors a user can fix are printed as one line
(``phasezoo: error: ...``) with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from pathlib import Path

from phasezoo.errors import PhaseZooError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (``phasezoo train: error: ...``), not the usage
    block; ``--help`` still shows everything."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _folder_arg(value: str) -> Path:
    """A folder argument (``--root``, ``--data-dir``): it may not exist yet, but not be a file."""
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a file, not a folder")
    return path


def _add_zoo_args(p: argparse.ArgumentParser, *, root: bool = True) -> None:
    p.add_argument("zoo", help="zoo name (see `phasezoo zoos`) or path to a zoo YAML file")
    p.add_argument("--profile", "-p", default="mini", help="profile: paper, mini or smoke (default: mini)")
    if root:
        p.add_argument("--root", default="data/zoos", type=_folder_arg,
                       help="folder that holds the zoos (default: data/zoos)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    """Options of the commands that run models: train, metrics, downstream."""
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda[:N]")
    p.add_argument("--workers", type=int, default=1, help="parallel local worker processes (default 1)")
    p.add_argument("--data-dir", type=_folder_arg, default=None,
                   help="dataset root (default: $PHASEZOO_DATA or ~/.cache/phasezoo/datasets)")
    p.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local (--workers processes on this machine, default) or ray (Ray tasks on a cluster)")
    p.add_argument("--ray-address", default=None,
                   help="Ray cluster to join (auto: the one `ray start` runs here; default: start a local Ray)")
    p.add_argument("--cpus-per-task", type=float, default=1.0,
                   help="CPUs each Ray task reserves, fractions allowed (default 1; torch threads follow it)")
    p.add_argument("--gpus-per-task", type=float, default=0.0,
                   help="GPUs each Ray task reserves, fractions allowed (0.25: four tasks share a GPU; default 0)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
    p.add_argument("--pack", action=argparse.BooleanOptionalAction, default=None,
                   help="train the seeds of a grid cell as one packed model (default: where it measured "
                        "faster, the ResNets); --no-pack trains them one by one")
    p.add_argument("--channels-last", action="store_true",
                   help="convolutions in NHWC memory order (GPU speed option; recorded with each member)")
    p.add_argument("--autocast", choices=["bf16"], default=None,
                   help="train the forward pass in bfloat16 autocast (weights and optimizer stay float32)")
    p.add_argument("--compile", action="store_true", help="train through torch.compile")

    p = sub.add_parser("status", help="count done, partial, pending and diverged members")
    _add_zoo_args(p)

    p = sub.add_parser("verify", help="check every file of a zoo: hashes, results against status, "
                                      "planned checkpoints; one line per problem, exit 0 or 2")
    _add_zoo_args(p)

    p = sub.add_parser("table", help="one row per member: config and results at an epoch")
    _add_zoo_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--epoch", default="last", help="'last' (default) or an epoch number")
    which.add_argument("--epochs", default=None, metavar="E1,E2,...",
                       help="several epochs ('5,10,last'), one block of rows per epoch")
    p.add_argument("--csv", default=None, help="write CSV to this file ('-' for stdout)")

    p = sub.add_parser("metrics", help="compute loss-landscape metrics (Hessian, CKA, mode connectivity)")
    _add_zoo_args(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--epochs", default=None, metavar="E1,E2,...",
                       help="checkpoint epochs to measure, e.g. '5,10,last' (default: the profile's "
                            "metrics.epochs, usually 'last'); each epoch is stored and resumed on its own")
    which.add_argument("--epoch", default=None, help="one checkpoint epoch or 'last' (same as --epochs E)")
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
    p.add_argument("--repeats", type=int, default=20,
                   help="random train/test splits of the grid cells (default 20; 1: the split of --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the single split when --repeats 1")
    p.add_argument("--csv", default=None, help="also write the per-property table as CSV ('-': stdout)")

    p = sub.add_parser("summary", help="Tables 5-7: mean ± std [min, max] of the final metrics per zoo")
    p.add_argument("zoos", nargs="+", metavar="zoo", help="zoo names or YAML paths")
    p.add_argument("--profile", "-p", default="mini", help="profile: paper, mini or smoke (default: mini)")
    p.add_argument("--root", type=_folder_arg, default=Path("data/zoos"), help="folder that holds the zoos (default: data/zoos)")
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
    p.add_argument("--root", type=_folder_arg, default=Path("data/zoos"), help="folder that holds the zoos (default: data/zoos)")
    p.add_argument("--book", type=Path, default=Path("book"), help="the book folder (default: book)")
    p.add_argument("--workers", type=int, default=2, help="notebooks executed at a time (default 2)")
    p.add_argument("--no-build", action="store_true", help="execute the notebooks only, do not run jupyter-book")

    p = sub.add_parser("export", help="export a zoo to another on-disk layout")
    _add_zoo_args(p)
    p.add_argument("--to", required=True, type=_folder_arg, help="destination folder (must not exist, or be empty)")
    p.add_argument("--format", default="ptmz", choices=["ptmz", "hf"],
                   help="ptmz: the authors' ray.tune layout (params.json, result.json, checkpoint_*); "
                        "hf: Parquet shards, a dataset card and croissant.json (Hugging Face datasets, mlcroissant)")
    p.add_argument("--max-rows-per-shard", type=int, default=None,
                   help="hf: rows per Parquet shard at most (default: shards of about 256 MB of weights)")

    p = sub.add_parser("import", help="read a zoo in another on-disk layout into the store (profile imported)")
    p.add_argument("src", type=Path, help="the zoo folder (one subfolder per model)")
    p.add_argument("--format", default="ptmz", choices=["ptmz"],
                   help="ptmz: the authors' ray.tune layout (params.json, result.json, checkpoint_*)")
    p.add_argument("--name", required=True, help="the zoo's name here (then: NAME --profile imported --root ROOT)")
    p.add_argument("--dataset", required=True, help="the dataset its models were trained on (e.g. cifar10)")
    p.add_argument("--root", default="data/zoos", type=_folder_arg,
                   help="folder that holds the zoos (default: data/zoos)")
    return parser


def _epochs_arg(value: str) -> list[int | str]:
    """``--epochs 5,10,last``: a comma-separated list of epochs and/or 'last', no repeats."""
    parts = [v.strip() for v in value.split(",")]
    if not value.strip() or any(not v for v in parts):
        raise PhaseZooError(f"--epochs must list epochs separated by commas (e.g. 5,10,last), got {value!r}")
    epochs = [_epoch_arg(v) for v in parts]
    if len(set(epochs)) != len(epochs):
        raise PhaseZooError(f"--epochs lists an epoch twice: {value!r}")
    return epochs


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


def _check_csv(csv: str | None) -> None:
    """Refuse a ``--csv`` destination that cannot be written, before any work is done."""
    if csv not in (None, "-") and Path(csv).is_dir():
        raise PhaseZooError(f"--csv {csv} is a folder; give a file name")


def _write_csv(df, csv: str | None) -> bool:
    """Write ``df`` as CSV to stdout (``-``) or atomically to a file; False when ``csv`` is None."""
    if csv is None:
        return False
    if csv == "-":
        df.to_csv(sys.stdout, index=False)
    else:
        from phasezoo.store import atomic_write_bytes  # lazy: the CLI starts without importing torch

        atomic_write_bytes(Path(csv), df.to_csv(index=False).encode())
        print(f"wrote {len(df)} rows to {csv}")
    return True


def _check_profile(spec, profile: str) -> None:
    spec.profile(profile)  # raises a one-line SpecError naming the valid profiles


def _load_specs(zoos: list[str], profile: str, root: Path) -> list:
    """The specs of several zoos (names, YAML paths, or zoos imported under ``root``), each
    checked to have ``profile`` (commands over many zoos)."""
    from phasezoo.spec import load_spec  # lazy: the CLI starts without importing torch

    specs = [load_spec(z, root) for z in zoos]
    for spec in specs:
        _check_profile(spec, profile)
    return specs


def _executor_options(args: argparse.Namespace) -> dict:
    """The executor options of train, metrics and downstream, checked before anything is read
    (one line for a bad value, or for ``--executor ray`` without Ray installed)."""
    from phasezoo.executors import check_executor  # lazy: the CLI starts without importing torch

    options = dict(executor=args.executor, ray_address=args.ray_address,
                   cpus_per_task=args.cpus_per_task, gpus_per_task=args.gpus_per_task)
    check_executor(workers=args.workers, **options)
    return options


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _check_csv(getattr(args, "csv", None))
    # lazy: the CLI starts, parses and answers --help without importing torch
    from phasezoo.spec import list_zoos, load_spec, plan_json

    if args.command == "zoos":
        for name in list_zoos():
            spec = load_spec(name)
            sizes = ", ".join(f"{p} ({prof.size})" for p, prof in spec.profiles.items())
            print(f"{name:24s} {spec.description}\n{'':24s} profiles: {sizes}")
        return 0

    if args.command == "notebook":
        # lazy: the CLI starts without importing yaml
        from phasezoo.publish.notebooks import find_notebook, parse_parameters, run_notebook

        source = find_notebook(args.name)
        out = args.out or Path("notebooks/_runs") / f"{source.stem}.ipynb"
        run_notebook(source, out, parse_parameters(args.parameter))
        print(f"wrote {out}")
        return 0

    if args.command == "book":
        from phasezoo.publish.book import build_html, execute_pages  # lazy: the CLI starts without importing torch

        from phasezoo.spec import stored_spec_path  # lazy: the CLI starts without importing torch

        _load_specs(args.zoos, args.profile, args.root)
        if args.workers < 1:
            raise PhaseZooError(f"--workers must be at least 1, got {args.workers}")
        # the notebooks load a zoo by name or path: an imported zoo by its stored spec's path
        zoos = [z if z in list_zoos() or Path(z).suffix in (".yaml", ".yml", ".json")
                else str(stored_spec_path(args.root, z)) for z in args.zoos]
        start = time.perf_counter()
        execute_pages(zoos, args.profile, args.root, book_dir=args.book, workers=args.workers)
        print(f"stage notebooks: {time.perf_counter() - start:.0f} s")
        if not args.no_build:
            start = time.perf_counter()
            index = build_html(args.book)
            print(f"stage jupyter-book: {time.perf_counter() - start:.0f} s; open {index}")
        return 0

    if args.command == "summary":
        from phasezoo.analysis.report import summary_table, summary_tables  # lazy: the CLI starts without importing torch

        specs = _load_specs(args.zoos, args.profile, args.root)
        if args.csv is not None:  # one machine-readable table: the union of the domains' columns
            _write_csv(summary_table(specs, args.profile, args.root), args.csv)
            return 0
        for title, table in summary_tables(specs, args.profile, args.root).items():
            print(f"{title}\n{table.to_string(index=False)}\n")
        return 0

    if args.command == "import":
        from phasezoo.publish.ptmz import IMPORTED_PROFILE, import_ptmz  # lazy: the CLI starts without importing torch

        t0 = time.perf_counter()
        z = import_ptmz(args.src, args.name, args.dataset, args.root)
        print(f"imported {len(z.members)} members of {args.src} as {z.name} --profile {IMPORTED_PROFILE} "
              f"--root {args.root} in {time.perf_counter() - t0:.1f} s")
        return 0

    executor_options = _executor_options(args) if hasattr(args, "executor") else {}
    spec = load_spec(args.zoo, getattr(args, "root", None))
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

    from phasezoo import zoo as zoo_ops  # lazy: the CLI starts without importing torch

    z = zoo_ops.Zoo.of(spec, args.profile, args.root)
    if args.command == "train":
        from phasezoo.train import DeviceOptions  # lazy: the CLI starts without importing torch

        results = zoo_ops.train_zoo(z, device=args.device, workers=args.workers,
                                    data_dir=args.data_dir, pack=args.pack,
                                    options=DeviceOptions(channels_last=args.channels_last,
                                                          autocast=args.autocast, compile=args.compile),
                                    **executor_options)
        counts = zoo_ops.zoo_status(z)
        trained = sum(r.epochs_run for r in results)
        print(f"{spec.name}/{args.profile}: trained {trained} epochs in {len(results)} members; "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return 0

    if args.command == "verify":
        t0 = time.perf_counter()
        report = zoo_ops.verify_zoo(z)
        for line in report.problems:
            print(line)
        print(f"{spec.name}/{args.profile}: {report.files} files of {report.members} members checked in "
              f"{time.perf_counter() - t0:.1f} s; {len(report.problems)} problems",
              file=sys.stderr if report.problems else sys.stdout)
        return EXIT_USAGE if report.problems else 0

    if args.command == "status":
        counts = zoo_ops.zoo_status(z)
        print(" ".join(f"{k}={v}" for k, v in counts.items()))
        return 0

    if args.command == "table":
        from phasezoo.analysis.table import zoo_table  # lazy: the CLI starts without importing torch

        if args.epochs is not None:
            import pandas as pd  # lazy: the CLI starts without importing pandas

            df = pd.concat([zoo_table(z, epoch=e).assign(table_epoch=z.final_epoch if e == "last" else e)
                            for e in _epochs_arg(args.epochs)], ignore_index=True)
        else:
            df = zoo_table(z, epoch=_epoch_arg(args.epoch))
        if not _write_csv(df, args.csv):
            import pandas as pd  # lazy: the CLI starts without importing pandas

            with pd.option_context("display.max_rows", None, "display.width", 200,
                                   "display.float_format", "{:.4g}".format):
                print(df.drop(columns=["arch", "dataset"]).to_string(index=False))
        return 0

    if args.command == "metrics":
        from phasezoo.landscape.runner import compute_metrics  # lazy: the CLI starts without importing torch

        if args.epochs is not None:
            epochs = _epochs_arg(args.epochs)
        elif args.epoch is not None:
            epochs = [_epoch_arg(args.epoch)]
        else:
            epochs = list(z.settings.metric_epochs)
        info = compute_metrics(z, epoch=epochs,
                               device=args.device, workers=args.workers, data_dir=args.data_dir,
                               **executor_options)
        which = "epoch" if len(info["epochs"]) == 1 else "epochs"
        print(f"{spec.name}/{args.profile} {which} {', '.join(map(str, info['epochs']))}: computed "
              f"{info['tasks']} metric tasks in {info['wall_s']:.1f} s (Hessian {info['hessian_task_s']:.1f} s, "
              f"CKA + mode connectivity {info['pair_task_s']:.1f} s of worker time)")
        if len(info["epochs"]) > 1:
            for ep, counts in info["phases_by_epoch"].items():
                print(f"  epoch {ep}: " + (" ".join(f"{k}={v}" for k, v in counts.items()) or "no phases"))
        return 0

    if args.command == "phases":
        from phasezoo.analysis.report import phase_report  # lazy: the CLI starts without importing torch

        print(phase_report(z, epoch=_epoch_arg(args.epoch)))
        return 0

    if args.command == "downstream":
        from phasezoo.downstream.runner import run_downstream  # lazy: the CLI starts without importing torch

        info = run_downstream(z, device=args.device, workers=args.workers,
                              data_dir=args.data_dir, **executor_options)
        print(f"{spec.name}/{args.profile} epoch {info['epoch']}: ran {info['tasks']} downstream tasks "
              f"in {info['wall_s']:.1f} s")
        return 0

    if args.command == "probe":
        from phasezoo.wsl.probe import PROBE_CSV_COLUMNS, zoo_probe  # lazy: the CLI starts without importing torch

        if args.repeats < 1:
            raise PhaseZooError(f"--repeats must be >= 1, got {args.repeats}")
        props, phase = zoo_probe(z, epoch=_epoch_arg(args.epoch),
                                 seed=args.seed, repeats=args.repeats)
        shown = (*PROBE_CSV_COLUMNS, "r2_test_median", "r2_hparams_median", "beats_hparams", "note") \
            if args.repeats > 1 else \
            ("property", "r2_test", "r2_train", "kendall_tau_test", "alpha", "n_train", "n_test", "note")
        cols = [c for c in shown if c in props]
        csv_cols = [c for c in PROBE_CSV_COLUMNS if c in props] if args.repeats > 1 else cols
        if args.csv == "-":
            props[csv_cols].to_csv(sys.stdout, index=False)
            return 0
        if args.csv:
            from phasezoo.store import atomic_write_bytes  # lazy: the CLI starts without importing torch

            atomic_write_bytes(Path(args.csv), props[csv_cols].to_csv(index=False).encode())
        import pandas as pd  # lazy: the CLI starts without importing pandas

        with pd.option_context("display.width", 200, "display.float_format", "{:.3f}".format):
            split = (f"mean and 90% interval over {args.repeats} random splits, beside the "
                     "hyper-parameter baseline" if args.repeats > 1 else f"split seed {args.seed}")
            print(f"{spec.name}/{args.profile}: linear probe on weight statistics, R² on held-out grid cells "
                  f"({split})")
            print(props[cols].to_string(index=False))
        if "gain_ci" in phase:
            print(f"phase label: accuracy {phase['accuracy_test']:.3f} [{phase['accuracy_ci'][0]:.3f}, "
                  f"{phase['accuracy_ci'][1]:.3f}], majority baseline {phase['baseline_accuracy']:.3f}; "
                  f"gain {phase['gain']:+.3f} [{phase['gain_ci'][0]:+.3f}, {phase['gain_ci'][1]:+.3f}] "
                  f"over {phase['splits']} splits")
        elif "accuracy_test" in phase:
            print(f"phase label: accuracy {phase['accuracy_test']:.3f} on {phase['n_test']} held-out "
                  f"members, majority baseline {phase['baseline_accuracy']:.3f} "
                  f"(majority class {phase['majority_class']})")
        else:
            print(f"phase label: {phase.get('note')}")
        return 0

    if args.command == "export":
        t0 = time.perf_counter()
        if args.format == "hf":
            from phasezoo.publish.hf import export_hf  # lazy: the CLI starts without importing torch

            if args.max_rows_per_shard is not None and args.max_rows_per_shard < 1:
                raise PhaseZooError(f"--max-rows-per-shard must be at least 1, got {args.max_rows_per_shard}")
            info = export_hf(z, to=args.to, max_rows_per_shard=args.max_rows_per_shard)
            print(f"exported {info['rows']} rows of {info['members']} members to {args.to} (format hf): "
                  f"{info['shards']} shard(s), {info['bytes'] / 1e6:.1f} MB in {time.perf_counter() - t0:.1f} s")
            return 0
        from phasezoo.publish.ptmz import export_ptmz  # lazy: the CLI starts without importing torch

        n = export_ptmz(z, to=args.to)
        print(f"exported {n} members to {args.to} (format {args.format}) in {time.perf_counter() - t0:.1f} s")
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> None:
    """Run the command; every expected failure is one line on stderr and exit code 2
    (``PHASEZOO_DEBUG=1`` shows the traceback instead)."""
    debug = os.environ.get("PHASEZOO_DEBUG", "") not in ("", "0")
    try:
        code = run(argv)
    except KeyboardInterrupt:
        print("phasezoo: interrupted; rerun the same command to resume", file=sys.stderr)
        code = 130
    except BrokenPipeError:
        # the reader of our stdout went away (`phasezoo table --csv - | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    except Exception as e:  # noqa: BLE001 - turned into one line below, or re-raised
        message = failure_message(e)
        if message is None or debug:
            raise
        print(f"phasezoo: error: {message}", file=sys.stderr)
        code = EXIT_USAGE
    sys.exit(code)


def failure_message(e: BaseException) -> str | None:
    """The one line for an expected failure, or None for a bug (which keeps its traceback)."""
    if isinstance(e, PhaseZooError):
        return str(e)
    if isinstance(e, OSError):
        where = f": {e.filename}" if e.filename else ""
        if e.errno == errno.ENOSPC:
            return f"no space left on the device{where}; finished work is stored, free space and rerun"
        if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return f"cannot write{where} ({e.strerror}); choose another --root or fix the permissions"
        return f"{e.strerror or e}{where}"
    if isinstance(e, UnicodeError):
        return f"a file is not valid UTF-8 text ({e})"
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or (
            isinstance(e, RuntimeError) and ("can't allocate memory" in str(e) or "out of memory" in str(e))):
        return "out of memory; choose a smaller width or batch size, or fewer --workers"
    return None


if __name__ == "__main__":
    main()
