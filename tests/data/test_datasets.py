import functools
import gzip
import http.server
import os
import shutil
import threading
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest

from hebbsim.data import datasets as ds
from hebbsim.data.datasets import DATASETS, Dataset, data_root, load_dataset, load_digits, load_mnist
from hebbsim.errors import DataError, HebbsimError

MNIST_NAMES = list(ds.MNIST_FILES)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """Point the user cache at an empty folder so a real ~/.cache cannot mask a failure."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache / "hebbsim" / "mnist"


@pytest.fixture(scope="module")
def shared_mnist_dir() -> Path:
    root = os.environ.get("HEBBSIM_DATA", "")
    d = Path(root) / "mnist"
    if not root or not all((d / f).is_file() for f in MNIST_NAMES):
        pytest.skip("real MNIST not available (set HEBBSIM_DATA to the folder that holds mnist/)")
    return d.resolve()  # HEBBSIM_DATA may be relative (README: ../shared/data); symlinks need absolute targets


@pytest.fixture(scope="module")
def mnist(shared_mnist_dir) -> Dataset:
    return load_mnist(download=False)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_dtype_range():
    d = load_digits()
    assert d.name == "digits"
    assert d.x_train.shape == (1437, 64) and d.x_test.shape == (360, 64)
    assert d.y_train.shape == (1437,) and d.y_test.shape == (360,)
    assert d.x_train.dtype == np.float32 and d.x_test.dtype == np.float32
    assert d.y_train.dtype == np.int64 and d.y_test.dtype == np.int64
    assert d.n_features == 64 and d.n_classes == 10
    for x in (d.x_train, d.x_test):
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert d.x_train.max() == 1.0  # 16/16
    assert set(np.unique(d.y_test)) == set(range(10))
    assert set(np.unique(d.y_train)) == set(range(10))


def test_digits_split_is_fixed():
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    a, b = load_digits(), load_dataset("digits")
    for name in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    # the documented recipe reproduces it
    bunch = sk_load_digits()
    xtr, xte, ytr, yte = train_test_split(
        bunch.data / 16.0, bunch.target, test_size=0.2, random_state=0, stratify=bunch.target
    )
    np.testing.assert_array_equal(a.y_train, ytr)
    np.testing.assert_array_equal(a.y_test, yte)
    np.testing.assert_allclose(a.x_test, xte, rtol=0, atol=1e-7)


def test_arrays_are_read_only():
    d = load_digits()
    with pytest.raises(ValueError):
        d.x_train[0, 0] = 0.5


# --------------------------------------------------------------------------- names / roots


def test_unknown_name_raises_value_error():
    with pytest.raises(ValueError) as exc:
        load_dataset("cifar10")
    msg = str(exc.value)
    assert "cifar10" in msg
    for name in DATASETS:
        assert name in msg


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("HEBBSIM_DATA", raising=False)
    assert data_root() is None
    monkeypatch.setenv("HEBBSIM_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert data_root(str(tmp_path)) == tmp_path
    monkeypatch.setenv("HEBBSIM_DATA", "")
    assert data_root() is None


def test_data_error_is_file_not_found():
    assert issubclass(DataError, FileNotFoundError) and issubclass(DataError, HebbsimError)


# --------------------------------------------------------------------------- MNIST, real files


def test_mnist_from_hebbsim_data(mnist):
    assert mnist.name == "mnist" and mnist.n_classes == 10 and mnist.n_features == 784
    assert mnist.x_train.shape == (60000, 784) and mnist.x_test.shape == (10000, 784)
    assert mnist.x_train.dtype == np.float32 and mnist.y_train.dtype == np.int64
    assert mnist.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert mnist.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    train_counts = np.bincount(mnist.y_train, minlength=10)
    test_counts = np.bincount(mnist.y_test, minlength=10)
    assert train_counts.sum() == 60000 and test_counts.sum() == 10000
    assert train_counts[0] == 5923 and test_counts[0] == 980
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0.0 and x.max() == 1.0


def test_mnist_is_cached_in_memory(mnist):
    again = load_dataset("mnist", download=False)
    assert again.x_train is mnist.x_train and again.y_test is mnist.y_test


def test_mnist_explicit_root_wins_over_env(shared_mnist_dir, tmp_path, monkeypatch, isolated_cache, mnist):
    monkeypatch.setenv("HEBBSIM_DATA", str(tmp_path / "nowhere"))
    d = load_mnist(shared_mnist_dir.parent, download=False)
    assert d.x_train is mnist.x_train


def test_recompressed_file_still_verifies(shared_mnist_dir, tmp_path, isolated_cache, mnist):
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for f in MNIST_NAMES:  # symlinks resolve to the shared files, so the in-memory cache answers
        (root / "mnist" / f).symlink_to(shared_mnist_dir / f)
    name = "t10k-labels-idx1-ubyte.gz"
    (root / "mnist" / name).unlink()
    raw = gzip.decompress((shared_mnist_dir / name).read_bytes())
    (root / "mnist" / name).write_bytes(gzip.compress(raw, compresslevel=1, mtime=0))
    d = load_mnist(root, download=False)
    np.testing.assert_array_equal(d.y_test, mnist.y_test)


# --------------------------------------------------------------------------- MNIST, errors


def test_corrupt_file_raises_checksum_error(shared_mnist_dir, tmp_path, isolated_cache):
    target = tmp_path / "mnist"
    target.mkdir()
    for f in MNIST_NAMES:
        shutil.copyfile(shared_mnist_dir / f, target / f)
    bad = target / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(bad.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # change the first label; header stays valid
    bad.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, download=True)  # a corrupt file is reported, never silently replaced
    msg = str(exc.value)
    assert "checksum" in msg
    assert str(bad) in msg
    assert ds.MNIST_FILES[bad.name] in msg  # expected hash
    assert "delete" in msg


def test_bad_magic_is_reported(tmp_path, isolated_cache):
    target = tmp_path / "mnist"
    target.mkdir()
    header = np.array([2049, 60000, 28, 28], dtype=">u4").tobytes()  # labels magic on an images file
    (target / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(header))
    for f in MNIST_NAMES[1:]:
        (target / f).write_bytes(gzip.compress(b""))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, download=False)
    msg = str(exc.value)
    assert "checksum" in msg and "magic number 2049" in msg and "2051" in msg


def test_not_gzip_is_reported(tmp_path, isolated_cache):
    target = tmp_path / "mnist"
    target.mkdir()
    for f in MNIST_NAMES:
        (target / f).write_bytes(b"not a gzip file")
    with pytest.raises(DataError, match="gzip"):
        load_mnist(tmp_path, download=False)


def test_missing_file_without_download(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setenv("HEBBSIM_DATA", str(tmp_path))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", download=False)
    msg = str(exc.value)
    assert str(tmp_path / "mnist") in msg
    assert str(isolated_cache) in msg
    assert "HEBBSIM_DATA" in msg and "[data] root" in msg and "download" in msg
    for f in MNIST_NAMES:
        assert f in msg


def test_missing_without_any_root_says_so(monkeypatch, isolated_cache):
    monkeypatch.delenv("HEBBSIM_DATA", raising=False)
    with pytest.raises(FileNotFoundError) as exc:  # DataError is a FileNotFoundError
        load_mnist(download=False)
    assert "HEBBSIM_DATA is not set" in str(exc.value)


def test_failed_download_raises_data_error(tmp_path, monkeypatch, isolated_cache):
    monkeypatch.setattr(ds, "MNIST_MIRRORS", ["http://127.0.0.1:9/"])
    monkeypatch.setattr(ds, "DOWNLOAD_TIMEOUT_S", 5.0)
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path / "bad-root", download=True)
    assert not isinstance(exc.value, URLError)
    msg = str(exc.value)
    assert "http://127.0.0.1:9/" in msg
    assert str(tmp_path / "bad-root" / "mnist") in msg
    assert "HEBBSIM_DATA" in msg
    # nothing half-written is left in the cache
    assert not isolated_cache.exists() or list(isolated_cache.iterdir()) == []


def test_download_from_mirror_into_cache(shared_mnist_dir, tmp_path, monkeypatch, isolated_cache, mnist):
    """A missing file is fetched from the first working mirror, verified, and renamed into the cache."""
    name = "t10k-labels-idx1-ubyte.gz"
    root = tmp_path / "root"
    (root / "mnist").mkdir(parents=True)
    for f in MNIST_NAMES:
        if f != name:  # symlinks resolve to the shared files, so the in-memory cache answers
            (root / "mnist" / f).symlink_to(shared_mnist_dir / f)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_mnist_dir))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        good = f"http://127.0.0.1:{server.server_address[1]}/"
        monkeypatch.setattr(ds, "MNIST_MIRRORS", ["http://127.0.0.1:9/", good])
        d = load_mnist(root, download=True)
    finally:
        server.shutdown()
        server.server_close()
    np.testing.assert_array_equal(d.y_test, mnist.y_test)
    assert sorted(p.name for p in isolated_cache.iterdir()) == [name]  # no temporary files left
    assert not (root / "mnist" / name).exists()  # never written into the data root


def test_standardized_inputs_have_the_training_mean_and_spread_removed():
    from hebbsim.data.datasets import load_dataset

    data = load_dataset("digits")
    z = data.standardized()
    varying = data.x_train.std(axis=0) > 0
    np.testing.assert_allclose(z.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.x_train.std(axis=0)[varying], 1, rtol=1e-4)
    assert not varying.all() and np.all(z.x_train[:, ~varying] == 0)  # constant pixels: only shifted
    x64 = data.x_train.astype(np.float64)
    mu, sigma = x64.mean(0), np.where(varying, x64.std(0), 1)
    np.testing.assert_allclose(z.x_test, (data.x_test - mu) / sigma, rtol=1e-5, atol=1e-5)  # the training statistics
    np.testing.assert_array_equal(z.y_test, data.y_test)
