"""Data sets: scikit-learn's 8x8 ``digits`` and ``mnist`` (28x28).

Every loader returns a :class:`Dataset` with ``float32`` inputs in ``[0, 1]`` of
shape ``(N, D)`` and ``int64`` labels. Arrays are read-only, since loaded data are
shared between calls through an in-memory cache; take a copy to modify them.

MNIST files are looked up, file by file, in

1. ``<root>/mnist/``, where ``root`` is the explicit argument, else the
   ``HEBBSIM_DATA`` environment variable (a data root with one folder per data
   set, e.g. ``HEBBSIM_DATA=../shared/data`` for files in ``../shared/data/mnist/``);
2. the user cache ``$XDG_CACHE_HOME/hebbsim/mnist`` (default ``~/.cache/hebbsim/mnist``);
3. if ``download=True``, missing files are downloaded into that cache from
   :data:`MNIST_MIRRORS` (first mirror that answers wins).

Each file is verified by the SHA-256 of its *decompressed* bytes, so a
recompressed ``.gz`` still verifies. Data are never written into the repository.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from hebbsim.errors import DataError

__all__ = [
    "DATASETS",
    "DATA_ENV",
    "IMAGE_SHAPES",
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "N_CLASSES",
    "Dataset",
    "cache_dir",
    "data_root",
    "load_dataset",
    "load_digits",
    "load_mnist",
]

log = logging.getLogger(__name__)

IMAGE_SHAPES: dict[str, tuple[int, int]] = {"digits": (8, 8), "mnist": (28, 28)}
"""(height, width) of each data set's images; its inputs are the images flattened row by row."""

N_CLASSES: dict[str, int] = {"digits": 10, "mnist": 10}
"""Number of classes (labels 0 … n − 1) of each data set."""

DATASETS: tuple[str, ...] = tuple(IMAGE_SHAPES)
"""Names accepted by :func:`load_dataset`."""

DATA_ENV = "HEBBSIM_DATA"
"""Environment variable naming the data root (the folder that holds ``mnist/``)."""

MNIST_MIRRORS: list[str] = [
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
]
"""Download base URLs for MNIST, tried in order."""

DOWNLOAD_TIMEOUT_S: float = 60.0
"""Socket timeout of one download attempt, in seconds."""

MNIST_FILES: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte.gz": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte.gz": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte.gz": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
"""MNIST file names -> SHA-256 of the decompressed IDX bytes."""

_IMAGES_MAGIC = 2051
_LABELS_MAGIC = 2049
_MNIST_SHAPE = {"train": 60000, "t10k": 10000}

_FIX_ROOT = (
    f"set {DATA_ENV} to the folder that holds mnist/ (e.g. {DATA_ENV}=../shared/data), "
    'or set `[data] root = "..."` in the parameter file'
)


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test data set; inputs are float32 (in [0, 1] as loaded), labels int64 in [0, n_classes)."""

    name: str
    x_train: np.ndarray  # float32, (N_train, D)
    y_train: np.ndarray  # int64, (N_train,)
    x_test: np.ndarray  # float32, (N_test, D)
    y_test: np.ndarray  # int64, (N_test,)
    n_classes: int

    @property
    def n_features(self) -> int:
        """Input dimension D."""
        return int(self.x_train.shape[1])

    def standardized(self) -> "Dataset":
        r"""Every input feature shifted and scaled to mean 0 and standard deviation 1 over the
        *training* samples, :math:`x \leftarrow (x - \mu)/\sigma` (test samples with the training
        :math:`\mu, \sigma`; a feature constant in training, e.g. an MNIST border pixel, is only
        shifted)."""
        mu = self.x_train.mean(axis=0, dtype=np.float64)
        sigma = self.x_train.std(axis=0, dtype=np.float64)
        sigma[sigma == 0] = 1.0
        scale = lambda x: ((x - mu) / sigma).astype(np.float32)  # noqa: E731
        return Dataset(self.name, scale(self.x_train), self.y_train, scale(self.x_test), self.y_test, self.n_classes)

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, x_test={self.x_test.shape}, "
            f"n_classes={self.n_classes})"
        )


# --------------------------------------------------------------------------- paths


def data_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data root: ``root`` if given, else ``$HEBBSIM_DATA`` if set and non-empty, else None."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV, "")
    return Path(env).expanduser() if env else None


def cache_dir(name: str) -> Path:
    """The user cache folder of data set ``name``: ``$XDG_CACHE_HOME/hebbsim/<name>``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "hebbsim" / name


# --------------------------------------------------------------------------- public loaders


def load_dataset(name: str, root: str | os.PathLike | None = None, *, download: bool = True) -> Dataset:
    """Load data set ``name`` (one of :data:`DATASETS`); ``root`` and ``download`` apply to MNIST only."""
    key = str(name).strip().lower()
    if key == "digits":
        return load_digits()
    if key == "mnist":
        return load_mnist(root, download=download)
    raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(map(repr, DATASETS))}")


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits (1797 images, D=64), scaled by 1/16 to [0, 1].

    The split is fixed: ``train_test_split(test_size=0.2, random_state=0, stratify=y)``,
    giving 1437 train and 360 test samples, identical on every call.
    """
    return _digits()


def load_mnist(root: str | os.PathLike | None = None, *, download: bool = True) -> Dataset:
    """MNIST: 60000 train and 10000 test images (D=784), pixels scaled by 1/255 to [0, 1].

    See the module docstring for the look-up order. Raises :class:`DataError` when a
    file is missing (and cannot be downloaded) or corrupt.
    """
    paths = _locate_mnist(data_root(root), download)
    x_train = _read_idx_file(paths["train-images-idx3-ubyte.gz"])
    y_train = _read_idx_file(paths["train-labels-idx1-ubyte.gz"])
    x_test = _read_idx_file(paths["t10k-images-idx3-ubyte.gz"])
    y_test = _read_idx_file(paths["t10k-labels-idx1-ubyte.gz"])
    for split, x, y in (("train", x_train, y_train), ("t10k", x_test, y_test)):
        if x.shape[0] != y.shape[0]:  # pragma: no cover - impossible with verified checksums
            raise DataError(f"MNIST {split} images ({x.shape[0]}) and labels ({y.shape[0]}) differ in count")
    return Dataset("mnist", x_train, y_train, x_test, y_test, n_classes=N_CLASSES["mnist"])


# --------------------------------------------------------------------------- digits


@lru_cache(maxsize=1)
def _digits() -> Dataset:
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float64) / 16.0).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)
    arrays = [np.ascontiguousarray(a) for a in (x_train, y_train, x_test, y_test)]
    for a in arrays:
        a.setflags(write=False)
    return Dataset("digits", *arrays, n_classes=N_CLASSES["digits"])


# --------------------------------------------------------------------------- MNIST: locate / download


def _candidate_dirs(root: Path | None) -> list[tuple[Path, str]]:
    dirs: list[tuple[Path, str]] = []
    if root is not None:
        dirs.append((root / "mnist", "data root"))
    dirs.append((cache_dir("mnist"), "user cache"))
    return dirs


def _describe_dirs(root: Path | None, dirs: list[tuple[Path, str]]) -> str:
    lines = []
    if root is None:
        lines.append(f"  (no data root: no root argument and {DATA_ENV} is not set)")
    for d, what in dirs:
        note = "" if d.is_dir() else ", folder does not exist"
        lines.append(f"  {d}{os.sep} ({what}{note})")
    return "\n".join(lines)


def _locate_mnist(root: Path | None, download: bool) -> dict[str, Path]:
    """Path of every MNIST file, downloading missing ones into the cache if allowed."""
    dirs = _candidate_dirs(root)
    found: dict[str, Path] = {}
    missing: list[str] = []
    for fname in MNIST_FILES:
        for d, _ in dirs:
            if (d / fname).is_file():
                found[fname] = d / fname
                break
        else:
            missing.append(fname)
    if not missing:
        return found

    looked = _describe_dirs(root, dirs)
    if not download:
        raise DataError(
            f"MNIST file(s) missing: {', '.join(missing)}.\nLooked in:\n{looked}\n"
            f"Fix: {_FIX_ROOT}; or allow download (download=True) into {cache_dir('mnist')}."
        )
    target = cache_dir("mnist")
    for fname in missing:
        found[fname] = _download(fname, target, looked)
    return found


def _download(fname: str, target: Path, looked: str) -> Path:
    """Download ``fname`` into ``target`` (atomically, verified) from the first mirror that works."""
    failures: list[str] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        failures.append(f"cannot create cache folder {target}: {exc}")
    else:
        for base in MNIST_MIRRORS:
            url = base.rstrip("/") + "/" + fname
            log.info("downloading %s -> %s", url, target / fname)
            tmp_name: str | None = None
            try:
                with tempfile.NamedTemporaryFile(dir=target, prefix=f".{fname}.", suffix=".part", delete=False) as tmp:
                    tmp_name = tmp.name
                    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
                        shutil.copyfileobj(resp, tmp, length=1 << 20)
                _verify(Path(tmp_name), fname, source=url)
                os.replace(tmp_name, target / fname)
                tmp_name = None
                return target / fname
            except (OSError, http.client.HTTPException, ValueError) as exc:
                # URLError, HTTPError, timeouts and DataError (bad download) are OSErrors
                reason = getattr(exc, "reason", None) or exc
                failures.append(f"{url}: {type(exc).__name__}: {reason}".replace("\n", " "))
            finally:
                if tmp_name is not None:
                    Path(tmp_name).unlink(missing_ok=True)
    raise DataError(
        f"MNIST file {fname} is missing and could not be downloaded.\nLooked in:\n{looked}\n"
        "Download attempts:\n" + "\n".join(f"  {f}" for f in failures) + "\n"
        f"Fix: {_FIX_ROOT}; or download the four MNIST .gz files by hand into {target}{os.sep}."
    )


# --------------------------------------------------------------------------- MNIST: verify / parse


def _decompress(path: Path) -> bytes:
    try:
        return gzip.decompress(path.read_bytes())
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise DataError(
            f"corrupt MNIST file {path}: not a valid gzip file ({exc}).\n"
            "Fix: delete the corrupt file (it is downloaded again when download is allowed) "
            f"or replace it with a good copy; or {_FIX_ROOT}."
        ) from exc


def _verify(path: Path, fname: str, *, source: str | None = None) -> bytes:
    """Decompressed bytes of ``path``; DataError unless their SHA-256 is the one known for ``fname``."""
    raw = _decompress(path)
    expected = MNIST_FILES[fname]
    actual = hashlib.sha256(raw).hexdigest()
    if actual != expected:
        extra = ""
        try:
            _parse_idx(raw, fname, path)
        except DataError as exc:
            extra = f" It is also malformed: {str(exc).splitlines()[0]}"
        where = f"{path} (downloaded from {source})" if source else str(path)
        raise DataError(
            f"corrupt MNIST file {where}: checksum mismatch of the decompressed data "
            f"(sha256 expected {expected}, actual {actual}).{extra}\n"
            "Fix: delete the corrupt file (it is downloaded again when download is allowed) "
            f"or replace it with a good copy; or {_FIX_ROOT}."
        )
    return raw


def _parse_idx(raw: bytes, fname: str, path: Path) -> np.ndarray:
    """Parse decompressed IDX bytes: images -> float32 (N, rows*cols) / 255, labels -> int64 (N,)."""
    images = "images" in fname
    magic_want = _IMAGES_MAGIC if images else _LABELS_MAGIC
    header_len = 16 if images else 8
    if len(raw) < header_len:
        raise DataError(f"bad IDX file {path}: only {len(raw)} bytes, shorter than the {header_len}-byte header")
    header = np.frombuffer(raw, dtype=">u4", count=header_len // 4)
    magic = int(header[0])
    if magic != magic_want:
        raise DataError(f"bad IDX file {path}: bad magic number {magic}, expected {magic_want}")
    n = int(header[1])
    n_want = _MNIST_SHAPE[fname.split("-", 1)[0]]
    dims = (n, int(header[2]), int(header[3])) if images else (n,)
    dims_want = (n_want, 28, 28) if images else (n_want,)
    if dims != dims_want:
        raise DataError(f"bad IDX file {path}: dimensions {dims}, expected {dims_want}")
    size = int(np.prod(dims))
    if len(raw) != header_len + size:
        raise DataError(f"bad IDX file {path}: {len(raw)} bytes, expected {header_len + size}")
    data = np.frombuffer(raw, dtype=np.uint8, offset=header_len, count=size)
    if images:
        out = data.reshape(n, -1).astype(np.float32)
        out /= np.float32(255.0)
    else:
        out = data.astype(np.int64)
    out.setflags(write=False)
    return out


def _read_idx_file(path: Path) -> np.ndarray:
    resolved = path.resolve()
    st = resolved.stat()
    return _read_idx_cached(str(resolved), path.name, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _read_idx_cached(resolved: str, fname: str, mtime_ns: int, size: int) -> np.ndarray:
    """Verified, parsed array of one file; keyed by resolved path, mtime and size."""
    path = Path(resolved)
    raw = _verify(path, fname)
    return _parse_idx(raw, fname, path)
