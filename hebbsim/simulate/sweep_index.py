"""The sweep folder's index: one record per point (parameters, status, attempts, error, wall time).

Layout of a sweep folder::

    <output>/index.json                     this index (JSON, replaced atomically)
    <output>/points/<label>-<hash>.h5       one run file per point (the run store, docs/guide.md)
    <output>/points/<…>.h5.ckpt.npz         its checkpoint
    <output>/points/<…>.h5.log              its log lines, every attempt
    <output>/points/<…>.h5.attempts.json    every start of the point (host, job, epoch)
    <output>/logs/                          SLURM/PBS job logs

Only the process running the sweep writes ``index.json``; the run files and attempts are the
truth it is rebuilt from on every launch (a point whose run file holds ``learning.epochs``
epochs is done, whatever the index says).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import HebbsimError
from .sweep_file import Dimension, SweepSpec
from .sweep_worker import held_epochs, read_attempts

INDEX_NAME = "index.json"
SCHEMA = "hebbsim-sweep/1"
STATUSES = ("pending", "running", "done", "failed")


class SweepIndexError(HebbsimError):
    """A folder holds no (readable) sweep index."""


@dataclass
class PointRecord:
    """One point of the sweep as the index holds it."""

    name: str  # <label>-<hash>: the run file's stem
    label: str
    position: dict[str, int]  # dimension → index
    values: dict  # dotted parameter key → value set by the sweep
    epochs_wanted: int  # learning.epochs
    status: str = "pending"  # pending | running | done | failed
    attempts: int = 0  # starts of the point so far (every launch, every worker)
    epochs: int = 0  # epochs its run file holds
    error: str | None = None  # the last error (failed points; retried ones keep it until done)
    wall_time: float = 0.0  # seconds of run time, all attempts together
    test_error: float | None = None  # last epoch's test error
    host: str | None = None  # where it ran (last)

    @property
    def file(self) -> str:
        return f"points/{self.name}.h5"


@dataclass
class SweepIndex:
    folder: Path
    dims: list[Dimension]
    points: dict[str, PointRecord]
    sweep: str = ""  # the sweep file, as TOML text
    base: dict = field(default_factory=dict)  # the base parameters
    updated: str = ""

    # -- building ---------------------------------------------------------------------------
    @classmethod
    def from_spec(cls, spec: SweepSpec) -> SweepIndex:
        """The index of ``spec``'s points, statuses taken from the folder: the previous index
        (errors, wall times) and the run files (done or not, epochs, attempts)."""
        try:
            previous = cls.load(spec.folder).points
        except SweepIndexError:
            previous = {}
        points = {}
        for p in spec.points:
            rec = PointRecord(p.name, p.label, {d.name: i for d, i in zip(spec.dims, p.position)}, p.values,
                              p.epochs)
            old = previous.get(p.name)
            if old is not None:
                rec.error, rec.wall_time, rec.test_error, rec.host = old.error, old.wall_time, old.test_error, old.host
                rec.status = "failed" if old.status == "failed" else "pending"
            points[p.name] = rec
        index = cls(spec.folder, spec.dims, points, spec.text, spec.base)
        index.refresh()
        return index

    def refresh(self, names=None) -> None:
        """Update epochs and attempts of points (all, or ``names``) from their files; a point
        whose run file holds every epoch it wants is done."""
        for name in names if names is not None else self.points:
            rec = self.points[name]
            path = self.folder / rec.file
            rec.epochs = held_epochs(path)
            rec.attempts = len(read_attempts(path))
            if rec.epochs >= rec.epochs_wanted:
                rec.status, rec.error = "done", None
            elif rec.status == "done":  # its run file was removed or replaced: run it again
                rec.status = "pending"

    # -- storage ----------------------------------------------------------------------------
    def save(self) -> Path:
        """Write ``index.json`` atomically (temporary file, rename)."""
        self.updated = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        doc = {
            "schema": SCHEMA,
            "updated": self.updated,
            "sweep": self.sweep,
            "base": self.base,
            "dims": [{"name": d.name, "keys": list(d.keys), "values": [list(v) for v in d.values]} for d in self.dims],
            "points": [asdict(r) for r in self.points.values()],
        }
        path = self.folder / INDEX_NAME
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, folder: str | Path) -> SweepIndex:
        folder = Path(folder).expanduser().resolve()
        path = folder / INDEX_NAME
        try:
            doc = json.loads(path.read_text())
        except (FileNotFoundError, NotADirectoryError):
            raise SweepIndexError(f"{folder} is not a sweep folder (it has no {INDEX_NAME})") from None
        except OSError as err:
            raise SweepIndexError(f"{path} cannot be read: {err.strerror or err}") from None
        except ValueError as err:
            raise SweepIndexError(f"{path} is not a readable sweep index: {err}") from None
        if doc.get("schema") != SCHEMA:
            raise SweepIndexError(f"{path}: unknown schema {doc.get('schema')!r} (expected {SCHEMA})")
        dims = [Dimension(d["name"], tuple(d["keys"]), tuple(tuple(v) for v in d["values"])) for d in doc["dims"]]
        points = {}
        for r in doc["points"]:
            points[r["name"]] = PointRecord(**r)
        return cls(folder, dims, points, doc.get("sweep", ""), doc.get("base", {}), doc.get("updated", ""))

    # -- reporting --------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in STATUSES}
        for r in self.points.values():
            out[r.status] += 1
        return out

    def summary(self) -> str:
        c = self.counts()
        return f"{len(self.points)} points: " + ", ".join(f"{c[s]} {s}" for s in STATUSES)

    def table(self) -> str:
        """The index as a text table: one row per point."""
        dim_cols = [d.name for d in self.dims]
        head = ["point", *dim_cols, "status", "attempts", "epochs", "test error", "wall time", "error"]
        rows = []
        for r in self.points.values():
            d_vals = [str(self.dims[k].coordinate()[r.position[d]]) for k, d in enumerate(dim_cols)]
            rows.append([
                r.name, *d_vals, r.status, str(r.attempts), f"{r.epochs}/{r.epochs_wanted}",
                "" if r.test_error is None else f"{100 * r.test_error:.2f} %",
                _hms(r.wall_time) if r.wall_time else "",
                r.error.splitlines()[0][:100] if r.error else "",
            ])
        widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(head)]
        fmt = lambda row: "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()  # noqa: E731
        footer = f"{self.summary()} (index of {self.folder}, updated {self.updated or 'never'})"
        return "\n".join([fmt(head), fmt(["-" * w for w in widths]), *map(fmt, rows), "", footer])


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
