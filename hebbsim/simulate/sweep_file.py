"""Sweep files (docs/hpc.md): a base parameter file and the points to run, validated before anything runs.

A sweep file is TOML (or the same as a dict)::

    base = "quickstart.toml"        # base parameter file, relative to the sweep file
    output = "runs/sweep_lr"        # sweep folder, relative to the working directory
    retries = 1                     # runs again after an error, before a point is marked failed
    seeds = [1, 2, 3]               # learning.seed: a dimension of its own

    [set]                           # the same for every point
    learning.epochs = 10

    [grid]                          # cartesian product: one dimension per key
    learning.lr = [[0.1, 0.05, 0.05], [0.05, 0.02, 0.02]]
    dynamics.beta = [0.5, 1.0]

    [zip]                           # paired lists: one dimension, named after the first key
    dynamics.dt = [0.5, 0.25]
    dynamics.free_steps = [40, 80]

    [cluster]                       # how to run (hebbsim.simulate.sweep_cluster)
    kind = "slurm"
    walltime = "02:00:00"

Keys are dotted parameter keys (``section.key``); TOML's nested tables and quoted dotted keys
(``"learning.lr" = [...]``) both work. The points are the cartesian product of the grid
dimensions, the zip dimension and the seeds, in that order. Each point is the base parameter
set with ``[set]`` and the point's values applied, validated like a parameter file; its run
file is ``<output>/points/<label>-<hash>.h5``: a readable label of its swept values and a
hash of its full parameter set (``record.path`` and ``learning.epochs`` aside, so that raising
``learning.epochs`` continues the same runs).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..analysis.rundata import RUN_DIMS as RUN_FILE_DIMS
from ..data.params import ParameterError, RunParams, read_toml_file, validate_params

RUN_DIMS = set(RUN_FILE_DIMS) | {"time", "point", "status", "attempts", "wall_time"}
"""Names in run files and sweep Datasets (dimensions, coordinates, per-point variables): a swept
dimension never takes one."""

LABEL_CHARS = 60
HASH_CHARS = 10


class SweepError(ParameterError):
    """A sweep file is invalid; the message names the key (and the point) and what is allowed."""


class ClusterConfig(BaseModel):
    """``[cluster]``: where the points run. Keys left out of a SLURM/PBS cluster are taken from
    Dask's jobqueue configuration (``~/.config/dask/jobqueue.yaml``), then from the defaults here."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: Literal["local", "slurm", "pbs"] = Field("local", description="local | slurm | pbs")
    workers: int | None = Field(None, ge=1, description="points run at once (local: default the CPUs; "
                                                          "slurm/pbs: default min(points, 32))")
    queue: str | None = Field(None, description="partition (SLURM) / queue (PBS)")
    account: str | None = None
    walltime: str | None = Field(None, description="per job, e.g. '02:00:00'")
    cores: int | None = Field(None, ge=1, description="CPUs per job (default: processes, else 1)")
    processes: int | None = Field(None, ge=1, description="workers per job, one point each (default: cores)")
    memory: str | None = Field(None, description="per job, e.g. '8GB' (default: 4GB per worker)")
    job_extra_directives: list[str] = Field(default_factory=list, description="extra #SBATCH / #PBS lines")
    job_script_prologue: list[str] = Field(default_factory=list, description="shell lines before the worker "
                                                                             "starts, e.g. 'module load python'")
    resource_spec: str | None = Field(None, description="PBS -l resource line (default: select=1:ncpus=…:mem=…)")
    lifetime: str | None = Field(None, description="worker lifetime, e.g. '50m' (default: 90 % of walltime "
                                                    "less the stagger); a point continues in a new job")
    lifetime_stagger: str | None = Field(None, description="spread of the lifetimes (default: 5 % of walltime, "
                                                            "at most 5 min)")
    log_directory: str | None = Field(None, description="job logs (default: <output>/logs)")
    local_directory: str | None = Field(None, description="worker scratch folder (default: the node's temp)")
    interface: str | None = Field(None, description="network interface of workers and scheduler, e.g. 'ib0'")
    python: str | None = Field(None, description="python on the compute nodes (default: this one)")
    env: dict[str, str] = Field(default_factory=dict, description="environment of the workers, e.g. "
                                                                  "HDF5_USE_FILE_LOCKING = 'FALSE'")
    allowed_failures: int = Field(10, ge=0, description="worker deaths during one attempt at a point before the "
                                                        "attempt counts as failed")
    dashboard_address: str = Field(":0", description="Dask dashboard (needs bokeh); ':0' = a free port")

    @field_validator("walltime", "lifetime", "lifetime_stagger")
    @classmethod
    def _duration(cls, v):
        if v is not None:
            duration_seconds(v)
        return v


def duration_seconds(text: str) -> float:
    """Seconds of a walltime (``[[D-]HH:]MM:SS`` or ``HH:MM``) or a Dask duration (``'50m'``, ``'2h'``)."""
    from dask.utils import parse_timedelta

    t = text.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d+)(?::(\d+))?", t)
    if m:
        days, a, b, c = (int(x) if x else 0 for x in m.groups())
        return days * 86400 + (a * 3600 + b * 60 + c if m.group(4) else a * 3600 + b * 60)
    try:
        return float(parse_timedelta(t))
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{text!r} is not a duration: use HH:MM:SS (e.g. '02:00:00') or e.g. '50m', '2h'") from None


class SweepFile(BaseModel):
    """The sweep file's top level (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    base: str | dict = Field(description="base parameter file (relative to the sweep file) or its contents")
    output: str | None = Field(None, description="sweep folder (default: sweeps/<sweep file name>)")
    retries: int = Field(1, ge=0, description="runs again after an error before the point is marked failed")
    seeds: list[int] | None = Field(None, min_length=1, description="values of learning.seed (dimension 'seed')")
    set: dict[str, Any] = Field(default_factory=dict, description="dotted key → one value, for every point")
    grid: dict[str, list] = Field(default_factory=dict, description="dotted key → values (cartesian product)")
    zip: dict[str, list] = Field(default_factory=dict, description="dotted key → values (paired, equal lengths)")
    cluster: ClusterConfig = ClusterConfig()

    @model_validator(mode="before")
    @classmethod
    def _flatten_tables(cls, raw):
        if isinstance(raw, dict):
            raw = dict(raw)
            for key in ("set", "grid", "zip"):
                if isinstance(raw.get(key), dict):
                    raw[key] = _flatten(raw[key], lists_only=key != "set")
        return raw

    @model_validator(mode="after")
    def _consistent(self):
        for name, table in (("grid", self.grid), ("zip", self.zip)):
            for key, values in table.items():
                if not values:
                    raise ValueError(f"{name}.{key} = []: give at least one value")
                seen = [_canonical(v) for v in values]
                dup = next((v for v, c in zip(values, seen) if seen.count(c) > 1), None)
                if dup is not None and (name == "grid" or key == next(iter(table))):
                    raise ValueError(f"{name}.{key} = {values}: the value {dup!r} repeats; values of a dimension "
                                     "must be distinct")
        lengths = {k: len(v) for k, v in self.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"zip = {lengths}: the zipped lists must have the same length")
        keys = [*self.set, *self.grid, *self.zip]
        for key in keys:
            if key.count(".") < 1:
                raise ValueError(f"{key!r}: a swept key is a dotted parameter key 'section.key', "
                                 "e.g. learning.lr")
            if key == "record.path":
                raise ValueError("record.path cannot be swept: every point's run file is <output>/points/…")
            if key == "learning.seed" and self.seeds is not None:
                raise ValueError("learning.seed is given twice: in seeds and in set/grid/zip; use seeds = [...]")
            if key == "learning.seed" and key in self.grid:
                raise ValueError("grid.learning.seed: give the seeds as seeds = [...] (a dimension of its own)")
        repeated = sorted({k for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"{', '.join(repeated)}: a key may appear in only one of set, grid and zip")
        return self


def _flatten(table: dict, prefix: str = "", lists_only: bool = True) -> dict:
    """Nested TOML tables → dotted keys. In ``[grid]``/``[zip]`` descent stops at lists (the
    values); in ``[set]`` at the first non-table value."""
    out = {}
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and (lists_only or "." not in key):
            out.update(_flatten(v, key + ".", lists_only))
        else:
            out[key] = v
    return out


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One dimension of the sweep: its name in the dataset, the parameter key(s) it sets and
    their values (a zip dimension sets several keys; the first names it)."""

    name: str
    keys: tuple[str, ...]
    values: tuple[tuple, ...]  # values[i] = the keys' values at position i

    def coordinate(self, key: str | None = None) -> list:
        """The values of ``key`` (default the first) as coordinate labels: scalars as they are,
        lists and tables as compact JSON text."""
        j = self.keys.index(key) if key else 0
        return [v[j] if isinstance(v[j], (int, float, str, bool)) else json.dumps(v[j]) for v in self.values]


@dataclass(frozen=True)
class Point:
    """One run of the sweep."""

    position: tuple[int, ...]  # index along every dimension
    values: dict[str, Any]  # dotted key → value set by the sweep (set excluded)
    label: str  # readable: dim=value_…
    digest: str  # hash of the full parameter set (record.path and learning.epochs aside)
    params: RunParams = field(repr=False)  # validated, record.path = the run file

    @property
    def name(self) -> str:
        return f"{self.label}-{self.digest}" if self.label else self.digest

    @property
    def path(self) -> Path:
        return Path(self.params.record.path)

    @property
    def epochs(self) -> int:
        return self.params.learning.epochs


@dataclass
class SweepSpec:
    """A validated sweep: its folder, dimensions, points and execution settings."""

    source: str  # the sweep file (or "<dict>")
    folder: Path  # absolute
    base: dict  # the base parameters (as read)
    fixed: dict[str, Any]  # [set]
    dims: list[Dimension]
    points: list[Point]
    retries: int
    cluster: ClusterConfig
    text: str  # the sweep file as TOML text (stored in the index)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(d.values) for d in self.dims)


def _format_value(v) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, (list, tuple)):
        return "-".join(_format_value(x) for x in v)
    if isinstance(v, dict):
        return "-".join(f"{k}{_format_value(x)}" for k, x in v.items())
    return str(v)


def _label(dims: list[Dimension], position: tuple[int, ...]) -> str:
    parts = []
    for d, i in zip(dims, position):
        for key, value in zip(d.keys, d.values[i]):
            short = d.name if key == d.keys[0] else key.rsplit(".", 1)[-1]
            parts.append(f"{short}={_format_value(value)}")
    label = re.sub(r"[^A-Za-z0-9.+=_-]", "", "_".join(parts))
    return label[:LABEL_CHARS].rstrip("_-")


def parameter_digest(params: RunParams) -> str:
    """Hash of a point's full parameter set, without ``record.path`` (where it is stored) and
    ``learning.epochs`` (a run may be continued for more epochs)."""
    raw = params.model_dump(mode="json", exclude_none=True)
    raw["record"].pop("path", None)
    raw["learning"].pop("epochs", None)
    return hashlib.sha256(_canonical(raw).encode()).hexdigest()[:HASH_CHARS]


def _dimension_names(keys: list[str]) -> dict[str, str]:
    """Short dimension names: the key's last part (``learning.lr`` → ``lr``), the whole key
    with ``_`` for dots where that clashes or is a run file's own dimension."""
    short = {k: k.rsplit(".", 1)[-1] for k in keys}
    counts = {s: list(short.values()).count(s) for s in short.values()}
    return {k: s if counts[s] == 1 and s not in RUN_DIMS else k.replace(".", "_") for k, s in short.items()}


def _set_dotted(raw: dict, key: str, value) -> None:
    node = raw
    parts = key.split(".")
    for i, p in enumerate(parts[:-1]):
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SweepError(f"{key} = {value!r}: {'.'.join(parts[:i + 1])} is not a table in the base parameters")
    node[parts[-1]] = copy.deepcopy(value)


def _read_toml(path: Path, what: str) -> dict:
    try:
        return read_toml_file(path, what)
    except ParameterError as err:
        raise SweepError(str(err)) from None


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"invalid sweep file {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            section = ClusterConfig if e["loc"][0] == "cluster" else SweepFile
            msg = f"unknown key; allowed keys here: {', '.join(section.model_fields)}"
        if e["type"] == "missing":
            lines.append(f"  {key}: required key is missing")
        elif key and e["type"] != "value_error":
            lines.append(f"  {key} = {e.get('input')!r}: {msg}")
        else:
            lines.append(f"  {msg}")
    return "\n".join(lines)


def load_sweep(sweep: str | Path | dict, output: str | Path | None = None) -> SweepSpec:
    """Read and validate a sweep file (or a dict with its contents): expand its points and
    validate every point's full parameter set. Raises :class:`SweepError` naming the point and
    the key on the first problem found (with the number of points that share it)."""
    import tomli_w

    if isinstance(sweep, dict):
        raw, source, here = copy.deepcopy(sweep), "<dict>", Path.cwd()
    else:
        path = Path(sweep)
        raw, source, here = _read_toml(path, "sweep file"), str(path), path.resolve().parent
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as err:
        raise SweepError(_format_errors(err, source)) from None

    if isinstance(spec.base, dict):
        base, base_source = copy.deepcopy(spec.base), "base"
    else:
        base_path = Path(spec.base) if Path(spec.base).is_absolute() else here / spec.base
        base, base_source = _read_toml(base_path, "base parameter file"), str(base_path)
    default_out = f"sweeps/{Path(source).stem}" if source != "<dict>" else None
    out = output or spec.output or default_out
    if out is None:
        raise SweepError("output: required key is missing (the sweep folder)")
    folder = Path(out).expanduser().resolve()

    names = _dimension_names([*spec.grid, *list(spec.zip)[:1], *(["learning.seed"] if spec.seeds else [])])
    dims = [Dimension(names[k], (k,), tuple((v,) for v in vals)) for k, vals in spec.grid.items()]
    if spec.zip:
        keys = tuple(spec.zip)
        dims.append(Dimension(names[keys[0]], keys, tuple(zip(*spec.zip.values()))))
    if spec.seeds:
        dims.append(Dimension(names["learning.seed"], ("learning.seed",), tuple((s,) for s in spec.seeds)))

    base_fixed = copy.deepcopy(base)
    for key, value in spec.set.items():
        _set_dotted(base_fixed, key, value)
    points, problems = [], {}
    for position in itertools.product(*(range(len(d.values)) for d in dims)):
        values = {k: v for d, i in zip(dims, position) for k, v in zip(d.keys, d.values[i])}
        label = _label(dims, position)
        raw_point = copy.deepcopy(base_fixed)
        for key, value in values.items():
            _set_dotted(raw_point, key, value)
        raw_point.setdefault("record", {})["path"] = str(folder / "points" / "placeholder.h5")
        try:
            cfg = validate_params(raw_point, base_source)
        except ParameterError as err:
            problems.setdefault(str(err), []).append(label or "the only point")
            continue
        digest = parameter_digest(cfg)
        name = f"{label}-{digest}" if label else digest
        cfg.record.path = str(folder / "points" / f"{name}.h5")
        points.append(Point(position, values, label, digest, cfg))
    if problems:
        msg, labels = next(iter(problems.items()))
        more = sum(len(v) for v in problems.values()) - 1
        raise SweepError(f"point {labels[0]}: {msg}" + (f"\n({more} more points are invalid)" if more else ""))
    names_seen = [p.name for p in points]
    if len(set(names_seen)) != len(names_seen):  # two points with the same parameters
        dup = next(n for n in names_seen if names_seen.count(n) > 1)
        raise SweepError(f"two points have the same parameters ({dup}); remove the repeated values")
    return SweepSpec(source, folder, base, dict(spec.set), dims, points, spec.retries, spec.cluster,
                     tomli_w.dumps(spec.model_dump(exclude_none=True)))
