"""Reliability probe of the command line: bad inputs, kills and corruption, counted.

What it does (each case through the real ``phasezoo`` command in a fresh subprocess, on the CPU,
on a tiny digits zoo trained for the probe under a temporary root):

* **bad inputs** -- every invocation in :data:`BAD_INPUTS` (bad specs, arguments, destinations,
  epochs, notebooks, untrained zoos). A case passes when the command exits 2 with exactly one
  line on stderr, no traceback, and the zoo root is unchanged afterwards (no file added, removed
  or modified, the lock file included).
* **corruption** -- one bit flipped (or one line dropped / repeated) in each kind of stored file
  of a finished member; then ``verify``, ``train`` and ``table`` (and ``metrics`` for
  checkpoints). A case passes when none of them exits 0 having read the damaged file, every
  refusal is one line (``verify``: one line per problem) naming the file, and nothing is written.
* **kills** -- ``phasezoo train`` killed with SIGKILL at a random moment (``--kills`` times), then
  rerun to the end. A case passes when every member is done with epochs 0..N each exactly once,
  every checkpoint equals (bit for bit) the one of an uninterrupted reference run, and no
  temporary file is left.

Run (from the repository root)::

    .venv/bin/python benchmarks/reliability_probe.py [--kills 10] [--out benchmarks/results/reliability_probe.json]

It writes the per-case outcomes and the totals, with the machine and torch version, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPEC = """\
name: probe-digits
arch: resnet18
dataset: digits
training:
  optimizer: sgd
  lr: 0.1
  momentum: 0.9
  weight_decay: 5.0e-4
  scheduler: {name: onecycle_cosine}
  epochs: 6
  augmentation: {random_crop: {padding: 1}}
  checkpoints: {every: 2}
profiles:
  smoke:
    grid: {width: [1, 2], batch_size: [256], seed: [0]}
"""

#: (label, spec text replacement or None, extra argv) -- ``{spec}``, ``{root}``, ``{tmp}`` filled in
BAD_INPUTS: list[tuple[str, tuple[str, str] | None, list[str]]] = [
    ("unknown zoo", None, ["train", "nope", "--root", "{root}"]),
    ("unknown profile", None, ["train", "{spec}", "-p", "huge", "--root", "{root}"]),
    ("workers 0", None, ["train", "{spec}", "-p", "smoke", "--root", "{root}", "--workers", "0"]),
    ("workers not a number", None, ["train", "{spec}", "-p", "smoke", "--root", "{root}", "--workers", "x"]),
    ("device tpu", None, ["train", "{spec}", "-p", "smoke", "--root", "{root}", "--device", "tpu"]),
    ("device cuda without one", None, ["train", "{spec}", "-p", "smoke", "--root", "{root}", "--device", "cuda"]),
    ("device cuda:9", None, ["metrics", "{spec}", "-p", "smoke", "--root", "{root}", "--device", "cuda:9"]),
    ("root is a file", None, ["train", "{spec}", "-p", "smoke", "--root", "{tmp}/afile"]),
    ("status root is a file", None, ["status", "{spec}", "-p", "smoke", "--root", "{tmp}/afile"]),
    ("data-dir is a file", None, ["train", "{spec}", "-p", "smoke", "--root", "{root}", "--data-dir", "{tmp}/afile"]),
    ("export to a file", None, ["export", "{spec}", "-p", "smoke", "--root", "{root}", "--to", "{tmp}/afile"]),
    ("export to a non-empty folder", None, ["export", "{spec}", "-p", "smoke", "--root", "{root}", "--to", "{tmp}/full"]),
    ("table csv is a folder", None, ["table", "{spec}", "-p", "smoke", "--root", "{root}", "--csv", "{tmp}/full"]),
    ("summary csv is a folder", None, ["summary", "{spec}", "-p", "smoke", "--root", "{root}", "--csv", "{tmp}/full"]),
    ("table epoch 999", None, ["table", "{spec}", "-p", "smoke", "--root", "{root}", "--epoch", "999"]),
    ("table epoch -1", None, ["table", "{spec}", "-p", "smoke", "--root", "{root}", "--epoch", "-1"]),
    ("table epoch x", None, ["table", "{spec}", "-p", "smoke", "--root", "{root}", "--epoch", "x"]),
    ("phases epoch without checkpoint", None, ["phases", "{spec}", "-p", "smoke", "--root", "{root}", "--epoch", "3"]),
    ("phases without metrics", None, ["phases", "{spec}", "-p", "smoke", "--root", "{root}"]),
    ("metrics epoch without checkpoint", None, ["metrics", "{spec}", "-p", "smoke", "--root", "{root}", "--epoch", "3"]),
    ("phases untrained", None, ["phases", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("table untrained", None, ["table", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("verify untrained", None, ["verify", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("metrics untrained", None, ["metrics", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("downstream untrained", None, ["downstream", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("probe untrained", None, ["probe", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("summary untrained", None, ["summary", "{spec}", "-p", "smoke", "--root", "{tmp}/empty"]),
    ("export untrained", None, ["export", "{spec}", "-p", "smoke", "--root", "{tmp}/empty", "--to", "{tmp}/x"]),
    ("notebook unknown", None, ["notebook", "99_nope", "--out", "{tmp}/nb.ipynb"]),
    ("notebook unknown parameter", None, ["notebook", "02_phases", "-p", "zooz", "x", "--out", "{tmp}/nb.ipynb"]),
    ("notebook parameter not an identifier", None, ["notebook", "02_phases", "-p", "a=1;import os", "1", "--out", "{tmp}/nb.ipynb"]),
    ("notebook keyword parameter", None, ["notebook", "02_phases", "-p", "class", "1", "--out", "{tmp}/nb.ipynb"]),
    ("book workers 0", None, ["book", "{spec}", "-p", "smoke", "--root", "{root}", "--workers", "0", "--no-build"]),
    ("no command", None, []),
    ("unknown command", None, ["trian"]),
    ("non-UTF-8 YAML", ("arch: resnet18", "arch: resnet18\ndescription: \udcff"), ["plan", "{bad}", "-p", "smoke"]),
    ("YAML syntax", ("arch: resnet18", "arch: [resnet18"), ["plan", "{bad}", "-p", "smoke"]),
    ("YAML not a mapping", ("name: probe-digits", "- a\n- b\n#"), ["plan", "{bad}"]),
    ("spec file missing", None, ["plan", "{tmp}/missing.yaml"]),
    ("pct_start abc", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, pct_start: abc}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("pct_start 1", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, pct_start: 1}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("div_factor 0", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, div_factor: 0}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("div_factor -5", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, div_factor: -5}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("final_div_factor 0", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, final_div_factor: 0}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("scheduler unknown key", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: onecycle_cosine, warmup: 3}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("scheduler unknown", ("scheduler: {name: onecycle_cosine}", "scheduler: {name: step}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("batch size 1", ("batch_size: [256]", "batch_size: [1]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("batch size 0", ("batch_size: [256]", "batch_size: [0]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("batch size larger than data", ("batch_size: [256]", "batch_size: [100000]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("batch size text", ("batch_size: [256]", "batch_size: [big]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("width too large for memory", ("width: [1, 2]", "width: [200000]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("width 0", ("width: [1, 2]", "width: [0]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("width repeated", ("width: [1, 2]", "width: [2, 2]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("seed negative", ("seed: [0]", "seed: [-1]"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("lr 0", ("lr: 0.1", "lr: 0"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("lr text", ("lr: 0.1", "lr: fast"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("momentum 1", ("momentum: 0.9", "momentum: 1.0"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("weight decay negative", ("weight_decay: 5.0e-4", "weight_decay: -1"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("epochs 0", ("epochs: 6", "epochs: 0"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("epochs text", ("epochs: 6", "epochs: many"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("checkpoint every 0", ("checkpoints: {every: 2}", "checkpoints: {every: 0}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("checkpoint past the end", ("checkpoints: {every: 2}", "checkpoints: {at: [99]}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("unknown optimizer", ("optimizer: sgd", "optimizer: rmsprop"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("unknown arch", ("arch: resnet18", "arch: resnet34"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("unknown dataset", ("dataset: digits", "dataset: mnist"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("unknown top-level key", ("arch: resnet18", "arch: resnet18\nlearning: fast"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("unknown augmentation", ("augmentation: {random_crop: {padding: 1}}", "augmentation: {mixup: 1}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("zoo name with ..", ("name: probe-digits", "name: ../../escape"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("zoo name absolute", ("name: probe-digits", "name: /tmp/escape"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("profile name with ..", ("  smoke:", "  ../up:"), ["train", "{bad}", "-p", "../up", "--root", "{root2}"]),
    ("grid axis missing", ("grid: {width: [1, 2], batch_size: [256], seed: [0]}", "grid: {width: [1, 2], seed: [0]}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("metrics batch size 1", ("profiles:", "metrics: {hessian: {batch_size: 1}}\nprofiles:"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("metrics num_t 3", ("profiles:", "metrics: {mode_connectivity: {num_t: 3}}\nprofiles:"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("prune sparsity 1.5", ("profiles:", "downstream: {prune: {sparsities: [1.5]}}\nprofiles:"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("phase threshold text", ("profiles:", "phases: {train_loss: low}\nprofiles:"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
    ("lbfgs options with sgd", ("epochs: 6", "epochs: 6\n  lbfgs: {max_iter: 5}"), ["train", "{bad}", "-p", "smoke", "--root", "{root2}"]),
]

#: (label, file relative to the member, damage)
CORRUPTIONS = [
    ("checkpoint tensor bit", "checkpoints/epoch_0006.safetensors", "flip_end"),
    ("checkpoint header bit", "checkpoints/epoch_0006.safetensors", "flip_header"),
    ("checkpoint truncated", "checkpoints/epoch_0006.safetensors", "truncate"),
    ("middle checkpoint bit", "checkpoints/epoch_0002.safetensors", "flip_end"),
    ("config value edited", "config.json", "edit_json"),
    ("status value edited", "status.json", "edit_json"),
    ("status not JSON", "status.json", "garbage"),
    ("results value edited", "results.jsonl", "edit_line"),
    ("results last line dropped", "results.jsonl", "drop_last"),
    ("results line repeated", "results.jsonl", "repeat_line"),
    ("checkpoint deleted", "checkpoints/epoch_0004.safetensors", "delete"),
]


def cli(args: list[str], timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", "import torch; torch.set_num_threads(1); from phasezoo.cli import main; main()"]
    return subprocess.run(cmd + args, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def snapshot(root: Path) -> dict:
    if not root.exists():
        return {}
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def one_line(proc: subprocess.CompletedProcess) -> bool:
    return (proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr)


def fill(args: list[str], where: dict) -> list[str]:
    return [a.format(**where) for a in args]


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "flip_end":
        path.write_bytes(data[:-5] + bytes([data[-5] ^ 1]) + data[-4:])
    elif how == "flip_header":
        n = int.from_bytes(data[:8], "little")
        i = 8 + n // 2
        path.write_bytes(data[:i] + bytes([data[i] ^ 2]) + data[i + 1:])
    elif how == "truncate":
        path.write_bytes(data[:-64])
    elif how == "garbage":
        path.write_bytes(b"\x00{not json")
    elif how == "edit_json":
        obj = json.loads(data)
        key = next(k for k, v in obj.items() if isinstance(v, (int, float)) and not isinstance(v, bool))
        obj[key] = obj[key] + 1
        path.write_text(json.dumps(obj))
    elif how == "edit_line":
        lines = data.decode().splitlines()
        row = json.loads(lines[-1])
        row["test_error"] = 0.0
        lines[-1] = json.dumps(row)
        path.write_text("\n".join(lines) + "\n")
    elif how == "drop_last":
        path.write_text("".join(data.decode().splitlines(keepends=True)[:-1]))
    elif how == "repeat_line":
        lines = data.decode().splitlines(keepends=True)
        path.write_text("".join(lines[:2] + lines[1:]))
    elif how == "delete":
        path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/reliability_probe.json"))
    opts = ap.parse_args()
    rng = random.Random(opts.seed)
    t_start = time.time()
    tmp = Path(tempfile.mkdtemp(prefix="phasezoo-probe."))
    spec = tmp / "probe-digits.yaml"
    spec.write_text(SPEC)
    root = tmp / "zoos"
    (tmp / "afile").write_text("x")
    (tmp / "full").mkdir()
    (tmp / "full" / "keep").write_text("x")
    ref = cli(["train", str(spec), "-p", "smoke", "--root", str(root), "--device", "cpu"])
    assert ref.returncode == 0, ref.stderr
    out: dict = {"machine": {"python": platform.python_version(), "platform": platform.platform(),
                             "cpus": os.cpu_count()}, "bad_inputs": [], "corruption": [], "kills": []}
    import torch

    out["machine"]["torch"] = torch.__version__

    # -- bad inputs
    for label, replace, args in BAD_INPUTS:
        where = {"spec": str(spec), "root": str(root), "tmp": str(tmp), "root2": str(tmp / "zoos2")}
        if replace is not None:
            bad = tmp / "bad.yaml"
            text = SPEC.replace(*replace)
            assert text != SPEC, label
            bad.write_bytes(text.encode("utf-8", "surrogateescape"))
            where["bad"] = str(bad)
        before = snapshot(tmp)
        proc = cli(fill(args, where))
        after = snapshot(tmp)
        if replace is not None:  # the bad spec file itself is the probe's own write
            before = {k: v for k, v in before.items() if not k.endswith("bad.yaml")}
            after = {k: v for k, v in after.items() if not k.endswith("bad.yaml")}
        ok = one_line(proc) and before == after and not (tmp.parent / "escape").exists()
        out["bad_inputs"].append({"case": label, "exit": proc.returncode, "stderr": proc.stderr.strip()[:300],
                                  "stderr_lines": proc.stderr.count("\n"), "wrote": before != after, "ok": ok})
        print(f"bad input  {'ok ' if ok else 'BAD'} {label}: exit {proc.returncode} {proc.stderr.strip()[:120]}",
              flush=True)

    # -- corruption of a finished member
    for label, rel, how in CORRUPTIONS:
        work = tmp / "corrupt"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(root, work)
        target = work / "probe-digits" / "smoke" / "w0001_b0256_s0" / rel
        damage(target, how)
        before = snapshot(work)
        results = {}
        commands = [["verify"], ["train", "--device", "cpu"], ["table"]]
        if rel.startswith("checkpoints"):
            commands.append(["metrics", "--device", "cpu"])
        for c in commands:
            proc = cli([c[0], str(spec), "-p", "smoke", "--root", str(work), *c[1:]])
            named = target.name in proc.stdout + proc.stderr or target.parent.name in proc.stdout + proc.stderr
            results[c[0]] = {"exit": proc.returncode, "named_file": named,
                             "message": (proc.stdout + proc.stderr).strip().splitlines()[:2]}
        # table reads status and results only; a damaged file it does not read may pass
        must_fail = [c for c in results if not (c == "table" and not rel.startswith(("status", "results")))]
        ok = (all(results[c]["exit"] == 2 and results[c]["named_file"] for c in must_fail)
              and snapshot(work) == before)
        out["corruption"].append({"case": label, "file": rel, "results": results, "ok": ok})
        print(f"corruption {'ok ' if ok else 'BAD'} {label}: " + ", ".join(f"{c} {r['exit']}" for c, r in results.items()),
              flush=True)

    # -- a finished zoo on a read-only file system (a read-only bind mount; needs root)
    ro_src, ro = tmp / "ro-src", tmp / "ro"
    shutil.copytree(root, ro_src)
    ro.mkdir()
    mounted = subprocess.run(["mount", "--bind", str(ro_src), str(ro)], capture_output=True).returncode == 0 and \
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True).returncode == 0
    out["read_only"] = []
    if mounted:
        try:
            for c, expect in ((["train", "--device", "cpu"], 0), (["status"], 0), (["table"], 0), (["verify"], 0),
                              (["phases"], 2), (["metrics", "--device", "cpu"], 2)):
                proc = cli([c[0], str(spec), "-p", "smoke", "--root", str(ro), *c[1:]])
                ok = proc.returncode == expect and (expect == 0 or one_line(proc))
                out["read_only"].append({"case": c[0], "exit": proc.returncode, "expected": expect,
                                         "stderr": proc.stderr.strip()[:200], "ok": ok})
                print(f"read-only  {'ok ' if ok else 'BAD'} {c[0]}: exit {proc.returncode} {proc.stderr.strip()[:100]}",
                      flush=True)
        finally:
            subprocess.run(["umount", str(ro)])
    else:
        out["read_only_note"] = "no read-only bind mount possible here (needs root); not measured"

    # -- random kill -9 during train, then a rerun
    from safetensors.torch import load_file

    reference = {p.relative_to(root): load_file(p) for p in root.rglob("*.safetensors")}
    for k in range(opts.kills):
        work = tmp / f"kill{k}"
        cmd = [sys.executable, "-c", "import torch; torch.set_num_threads(1); from phasezoo.cli import main; main()",
               "train", str(spec), "-p", "smoke", "--root", str(work), "--device", "cpu"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        delay = rng.uniform(2.5, 9.0)  # import takes ~2 s; the two members ~6 s
        time.sleep(delay)
        interrupted = proc.poll() is None  # still running: the kill lands mid-training
        done_before = sum(1 for p in work.rglob("status.json") if '"done"' in p.read_text()) if interrupted else None
        proc.kill()
        proc.wait()
        rerun = cli(["train", str(spec), "-p", "smoke", "--root", str(work), "--device", "cpu"])
        ver = cli(["verify", str(spec), "-p", "smoke", "--root", str(work)])
        same = all(
            all(torch.equal(t, load_file(work / rel)[name]) for name, t in tensors.items())
            for rel, tensors in reference.items() if "resume" not in str(rel))
        temps = [str(p) for p in work.rglob("*.tmp")]
        ok = rerun.returncode == 0 and ver.returncode == 0 and same and not temps
        out["kills"].append({"delay_s": round(delay, 2), "interrupted": interrupted,
                             "members_done_at_kill": done_before, "rerun_exit": rerun.returncode,
                             "verify_exit": ver.returncode, "bitwise_equal": same, "temp_files": temps, "ok": ok})
        print(f"kill       {'ok ' if ok else 'BAD'} after {delay:.1f} s (interrupted {interrupted}, "
              f"{done_before} members done): rerun {rerun.returncode}, "
              f"verify {ver.returncode}, bitwise {same}", flush=True)

    out["totals"] = {k: {"cases": len(out[k]), "ok": sum(c["ok"] for c in out[k])}
                     for k in ("bad_inputs", "corruption", "read_only", "kills")}
    out["wall_s"] = round(time.time() - t_start, 1)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["totals"]), f"in {out['wall_s']} s; wrote {opts.out}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
