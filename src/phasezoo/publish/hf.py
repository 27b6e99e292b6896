"""A zoo as a dataset for Hugging Face ``datasets`` and Croissant readers (``phasezoo export
--format hf``): Parquet shards, a dataset card and Croissant 1.0 metadata in one folder.

The layout::

    FOLDER/README.md                              dataset card: YAML header (license CC-BY-4.0,
                                                  configs -> data/*.parquet), columns, citation
    FOLDER/croissant.json                         Croissant 1.0 (JSON-LD): the files with their
                                                  sha256, one record set "members", every column
    FOLDER/data/train-00000-of-00003.parquet      the rows, in shards of at most
                                                  ``max_rows_per_shard`` rows / ~256 MB of weights

One row per member and stored (checkpoint) epoch, in member order, then epoch:

* identity: ``zoo``, ``profile``, ``member``, ``cell`` (grid cell ``w0004_b0064``), ``seed``,
  ``epoch``, ``status``;
* the config: its scalar fields (``arch``, ``dataset``, ``task``, ``width``, ``batch_size``,
  ``lr``, ``optimizer``, ...) as columns and the whole member config as JSON (``config_json``);
* that epoch's results and measurements, as :func:`phasezoo.analysis.table.zoo_table` gives them
  at that epoch: ``train_loss``, ``test_acc``, ... (losses in nats, accuracies and errors as
  fractions, perplexity ``exp(loss)``), the loss-landscape metrics and the cell's ``phase`` where
  ``phasezoo metrics`` measured that epoch, the downstream results on the final epoch's rows;
  null where not computed;
* the weights in the model's forward order (:func:`phasezoo.wsl.features.forward_order`):
  ``layer_names``, ``layer_kinds`` (``parameter`` or ``buffer``: BatchNorm statistics),
  ``layer_shapes`` and ``layer_weights`` (each tensor flattened, float32; non-float buffers such
  as ``num_batches_tracked`` are left out). ``np.reshape(layer_weights[i], layer_shapes[i])`` is
  the tensor.

``datasets.load_dataset(FOLDER)`` reads the folder (split ``train``; it caches a local folder
under its name, so after a new export to the same path pass ``download_mode="force_redownload"``);
``mlcroissant`` reads the same rows through ``croissant.json`` (record set ``members``, nested
lists included, text as bytes, every weight as a Python float: slow for large zoos). Every stored
file of the zoo is verified before anything is written; the folder is built next to the
destination and renamed into place, so an interrupted export leaves nothing half-written.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from phasezoo.analysis.table import zoo_table
from phasezoo.errors import PhaseZooError
from phasezoo.publish.staging import members_to_export, staged_folder
from phasezoo.spec import ZooSpec, cell_of
from phasezoo.wsl.features import forward_order
from phasezoo.zoo import DEFAULT_ROOT, Zoo

#: the citation of the paper the zoos reproduce (dataset card and Croissant ``citeAs``)
CITATION = """@article{schurholt2025phasezoo,
  title   = {A Model Zoo on Phase Transitions in Neural Networks},
  author  = {Sch{\\"u}rholt, Konstantin and Meynent, L{\\'e}o and Zhou, Yefan and Lu, Haiquan and
             Yang, Yaoqing and Borth, Damian},
  journal = {Journal of Data-centric Machine Learning Research},
  year    = {2025}
}"""
LICENSE_URL = "https://creativecommons.org/licenses/by/4.0/"
#: the record set of croissant.json
RECORD_SET = "members"
#: weights per shard before a new one starts (float32 bytes), unless max_rows_per_shard says less
SHARD_WEIGHT_BYTES = 256 * 2**20
#: identity columns, first in every row
ID_COLUMNS = ("zoo", "profile", "member", "cell", "seed", "epoch", "status")
#: integer columns (every other number is float64, null where missing)
INT_COLUMNS = ("seed", "epoch", "width", "batch_size", "epochs")
#: scalar config fields written as columns (the whole config is in config_json)
CONFIG_COLUMNS = ("arch", "dataset", "task", "width", "batch_size", "lr", "optimizer", "momentum",
                  "weight_decay", "epochs", "init", "beta")
#: the weight columns, in this order, after the others
WEIGHT_COLUMNS = ("layer_names", "layer_kinds", "layer_shapes", "layer_weights")


def _rows_table(z: Zoo) -> pd.DataFrame:
    """One row per member and checkpoint epoch it has: identity, config, results and metrics
    at that epoch (without the weights)."""
    store = z.store
    have = {m.member: set(store.member(m.member).checkpoint_epochs()) for m in z.members}
    configs = {m.member: m.to_dict() for m in z.members}
    parts = []
    for e in z.settings.training.checkpoint_epochs:
        members = [m for m, eps in have.items() if e in eps]
        if not members:
            continue
        df = zoo_table(z, epoch=e)
        df = df[df["member"].isin(members)].copy()
        df["epoch"] = e  # the checkpoint's epoch (the results line of the same epoch)
        parts.append(df)
    if not parts:
        raise PhaseZooError(f"no stored checkpoints of {z.name}/{z.profile} under {z.root}: run phasezoo train")
    rows = pd.concat(parts, ignore_index=True)
    rows["zoo"], rows["profile"] = z.name, z.profile
    rows["cell"] = rows["member"].map(cell_of)
    for col in CONFIG_COLUMNS:
        rows[col] = rows["member"].map(lambda m, c=col: configs[m].get(c))
    rows["config_json"] = rows["member"].map(lambda m: json.dumps(configs[m], sort_keys=True))
    order = {m.member: i for i, m in enumerate(z.members)}
    rows = rows.sort_values(["member", "epoch"], key=lambda s: s.map(order) if s.name == "member" else s)
    rest = [c for c in rows.columns if c not in (*ID_COLUMNS, *CONFIG_COLUMNS, "config_json")]
    return rows[[*ID_COLUMNS, *CONFIG_COLUMNS, "config_json", *rest]].reset_index(drop=True)


def _arrow_schema(rows: pd.DataFrame):
    """Column types: identity and grid integers int64, other numbers float64, flags bool, the
    rest text; then the weight lists."""
    import pyarrow as pa  # lazy: optional extra "hf"

    fields = []
    for col in rows.columns:
        s = rows[col]
        if col in INT_COLUMNS:
            t = pa.int64()
        elif pd.api.types.is_bool_dtype(s.dtype) or str(s.dtype) == "boolean":
            t = pa.bool_()
        elif pd.api.types.is_numeric_dtype(s.dtype) or s.dropna().map(lambda v: isinstance(v, (int, float))).all() \
                and s.notna().any():
            t = pa.float64()
        else:
            t = pa.string()
        fields.append(pa.field(col, t))
    fields += [pa.field("layer_names", pa.list_(pa.string())), pa.field("layer_kinds", pa.list_(pa.string())),
               pa.field("layer_shapes", pa.list_(pa.list_(pa.int64()))),
               pa.field("layer_weights", pa.list_(pa.list_(pa.float32())))]
    return pa.schema(fields)


def _plain(value: Any, arrow_type) -> Any:
    """A table value as the Python value of its Arrow column (None for missing)."""
    import pyarrow as pa  # lazy: optional extra "hf"

    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if pa.types.is_string(arrow_type):
        return str(value)
    if pa.types.is_boolean(arrow_type):
        return bool(value)
    if pa.types.is_integer(arrow_type):
        return int(value)
    return float(value)


def _weights(z: Zoo, member: str, epoch: int, order: dict[str, str]) -> dict[str, list]:
    """A member's checkpoint in forward order: names, kinds, shapes and float32 values."""
    _, state = z.store.member(member).load_checkpoint(epoch)
    names = [n for n in order if n in state] + sorted(set(state) - set(order))
    names = [n for n in names if state[n].is_floating_point()]
    return {"layer_names": names, "layer_kinds": [order.get(n, "buffer") for n in names],
            "layer_shapes": [list(state[n].shape) for n in names],
            "layer_weights": [state[n].detach().to("cpu").float().reshape(-1).numpy() for n in names]}


def _shards(z: Zoo, rows: pd.DataFrame, max_rows: int | None) -> Iterator[list[dict]]:
    """Rows with their weights, grouped into shards (by row count and weight bytes)."""
    configs = {m.member: m.to_dict() for m in z.members}
    shard, size = [], 0
    for rec in rows.to_dict("records"):
        w = _weights(z, rec["member"], int(rec["epoch"]), forward_order(configs[rec["member"]]))
        shard.append({**rec, **w})
        size += sum(v.nbytes for v in w["layer_weights"])
        if (max_rows and len(shard) >= max_rows) or size >= SHARD_WEIGHT_BYTES:
            yield shard
            shard, size = [], 0
    if shard:
        yield shard


def _write_shard(records: list[dict], schema, path: Path) -> None:
    import pyarrow as pa  # lazy: optional extra "hf"
    import pyarrow.parquet as pq  # lazy: optional extra "hf"

    columns = {}
    for f in schema:
        if f.name in WEIGHT_COLUMNS:
            columns[f.name] = pa.array([r[f.name] for r in records], type=f.type)
        else:
            columns[f.name] = pa.array([_plain(r.get(f.name), f.type) for r in records], type=f.type)
    pq.write_table(pa.table(columns, schema=schema), path, compression="zstd")


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


#: what the columns hold, for the dataset card and croissant.json
COLUMN_DOCS = {
    "zoo": "the zoo's name", "profile": "the profile (grid size) of the zoo", "member": "the member's name",
    "cell": "its grid cell (load x temperature)", "seed": "the seed", "epoch": "the checkpoint's epoch (0: initialisation)",
    "status": "done, partial or diverged", "config_json": "the member's whole training config (JSON)",
    "train_loss": "loss on the train set after the epoch (nats)", "test_loss": "loss on the test set (nats)",
    "train_acc": "train accuracy (fraction)", "test_acc": "test accuracy (fraction)",
    "train_error": "train error (fraction; PINN: relative L2 error)", "test_error": "test error (fraction; PINN: relative L2 error)",
    "gen_gap": "train minus test accuracy (fraction)", "hessian_top_eig": "top eigenvalue of the train-loss Hessian",
    "hessian_trace": "trace of the train-loss Hessian (Hutch++)", "cka": "unbiased CKA of the cell's seeds' outputs",
    "mc_error": "mode connectivity on the train error (paper: endpoint-mean reference)",
    "mc_error_chord": "mode connectivity on the train error (chord reference)", "phase": "the cell's phase at this epoch",
    "layer_names": "state-dict names in forward order", "layer_kinds": "parameter or buffer",
    "layer_shapes": "each tensor's shape", "layer_weights": "each tensor, flattened, float32",
}


def _card(z: Zoo, rows: pd.DataFrame, schema, shards: int, nbytes: int) -> str:
    import yaml  # lazy: only the card needs it

    header = {
        "license": "cc-by-4.0", "pretty_name": f"Phase zoo {z.name}/{z.profile}",
        "tags": ["model-zoo", "weight-space-learning", "phase-transitions"],
        "size_categories": [_size_category(len(rows))],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "data/*.parquet"}]}],
    }
    s = z.spec
    grid = ", ".join(f"{k} {list(v)}" for k, v in z.settings.grid.items())
    lines = [
        "---", yaml.safe_dump(header, sort_keys=False).strip(), "---", "",
        f"# Phase zoo: {z.name} ({z.profile})", "",
        f"{s.description.strip()}", "",
        f"- architecture `{s.arch}`, dataset `{s.dataset}`, task `{s.task}`",
        f"- load axis `{s.load_axis}`, temperature axis `{s.temperature_axis}`; grid: {grid}",
        f"- {rows['member'].nunique()} members, {len(rows)} rows (one per member and checkpoint epoch: "
        f"{', '.join(map(str, sorted(rows['epoch'].unique())))}), {shards} Parquet shard(s), {nbytes / 1e6:.1f} MB",
        "", "## Loading", "", "```python", "import datasets, numpy as np",
        "ds = datasets.load_dataset(\"PATH/TO/THIS/FOLDER\")[\"train\"]", "row = ds[0]",
        "first = np.reshape(row[\"layer_weights\"][0], row[\"layer_shapes\"][0])   # row[\"layer_names\"][0]",
        "```", "", "`datasets` caches a local folder under its name: after exporting again to the same "
        "path, pass `download_mode=\"force_redownload\"` (or a fresh `cache_dir`) to read the new files.", "",
        "`croissant.json` describes the same rows (record set `members`) for `mlcroissant`:", "",
        "```python", "import mlcroissant as mlc",
        "records = mlc.Dataset(jsonld=\"PATH/TO/THIS/FOLDER/croissant.json\").records(record_set=\"members\")", "```",
        "", "## Columns", "", "| column | type | meaning |", "|---|---|---|",
    ]
    lines += [f"| `{f.name}` | {f.type} | {COLUMN_DOCS.get(f.name, '')} |" for f in schema]
    lines += ["", "Missing values (a metric not measured at that epoch, downstream results before the final "
              "epoch) are null.", "", "## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


def _croissant_type(arrow_type):
    import mlcroissant as mlc  # lazy: optional extra "hf"
    import pyarrow as pa  # lazy: optional extra "hf"

    while pa.types.is_list(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_string(arrow_type):
        return mlc.DataType.TEXT
    if pa.types.is_boolean(arrow_type):
        return mlc.DataType.BOOL
    if pa.types.is_integer(arrow_type):
        return mlc.DataType.INTEGER
    return mlc.DataType.FLOAT


def _croissant(z: Zoo, folder: Path, schema, shard_files: list[Path]) -> dict:
    """Croissant 1.0 metadata of the folder: one FileObject per shard (with its sha256) in a
    FileSet the record set ``members`` reads, one field per column (lists ``repeated``)."""
    import mlcroissant as mlc  # lazy: optional extra "hf"
    import pyarrow as pa  # lazy: optional extra "hf"

    files = [mlc.FileObject(id=f"data/{p.name}", name=p.name, content_url=f"data/{p.name}",
                            encoding_formats=["application/x-parquet"],
                            sha256=hashlib.sha256(p.read_bytes()).hexdigest()) for p in shard_files]
    fileset = mlc.FileSet(id="parquet-shards", name="parquet-shards", encoding_formats=["application/x-parquet"],
                          includes="data/*.parquet")
    fields = [mlc.Field(id=f"{RECORD_SET}/{f.name}", name=f.name, description=COLUMN_DOCS.get(f.name, ""),
                        data_types=[_croissant_type(f.type)], repeated=pa.types.is_list(f.type),
                        source=mlc.Source(file_set="parquet-shards", extract=mlc.Extract(column=f.name)))
              for f in schema]
    record_set = mlc.RecordSet(id=RECORD_SET, name=RECORD_SET, fields=fields,
                               description="one record per member and checkpoint epoch")
    md = mlc.Metadata(
        name=f"phase-zoo-{z.name}-{z.profile}", description=z.spec.description.strip() or z.name,
        license=[LICENSE_URL], cite_as=CITATION, version="1.0.0",
        date_published=datetime.date.today().isoformat(), distribution=[*files, fileset], record_sets=[record_set])
    issues = md.issues.report()
    if md.issues.errors:
        raise PhaseZooError(f"croissant metadata of {z.name}/{z.profile} is invalid: {issues}")
    return md.to_json()


def export_hf(zoo: Zoo | str | Path | ZooSpec, profile: str | None = None, root: str | Path = DEFAULT_ROOT,
              to: str | Path | None = None, *, max_rows_per_shard: int | None = None) -> dict[str, Any]:
    """Write the zoo's rows to ``to`` as Parquet shards with a dataset card and ``croissant.json``
    (module docstring); returns ``members``, ``rows``, ``shards`` and ``bytes``. The destination
    must not exist or be an empty folder; every stored file is verified first, and the Croissant
    file is read back with ``mlcroissant`` before the folder is put in place."""
    try:
        import mlcroissant as mlc  # lazy: optional extra "hf"
        import pyarrow  # noqa: F401  # lazy: optional extra "hf"; checked here, used by the writers
    except ImportError as e:
        raise PhaseZooError(f"export --format hf needs pyarrow and mlcroissant ({e.name} is missing): "
                            "pip install 'phasezoo[hf]'") from None
    z = Zoo.of(zoo, profile, root)
    to, members = members_to_export(z, to, "export_hf")
    rows = _rows_table(z)
    schema = _arrow_schema(rows)
    with staged_folder(to) as tmp:
        (tmp / "data").mkdir()
        written = []
        for k, shard in enumerate(_shards(z, rows, max_rows_per_shard)):
            path = tmp / "data" / f"train-{k:05d}.parquet"
            _write_shard(shard, schema, path)
            written.append(path)
        n = len(written)
        shard_files = []
        for k, path in enumerate(written):  # the Hugging Face names say how many shards there are
            final = path.with_name(f"train-{k:05d}-of-{n:05d}.parquet")
            path.rename(final)
            shard_files.append(final)
        nbytes = sum(p.stat().st_size for p in shard_files)
        (tmp / "croissant.json").write_text(json.dumps(_croissant(z, tmp, schema, shard_files), indent=1))
        (tmp / "README.md").write_text(_card(z, rows, schema, n, nbytes))
        mlc.Dataset(jsonld=str(tmp / "croissant.json"))  # validates; raises on an invalid file
    return {"members": len(members), "rows": len(rows), "shards": n, "bytes": nbytes}
