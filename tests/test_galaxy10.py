"""Galaxy10 DECaLS loading (on a small HDF5 file written here) and the synthetic stand-in."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from latentcf.core.errors import LatentcfError
from latentcf.core.paths import file_digest
from latentcf.data import galaxy10


def write_fake_galaxy10(path, counts=(12, 25, 9, 30, 3, 11, 10, 20, 14, 19), size=32, seed=0):
    """A file with Galaxy10's keys: images (N, size, size, 3) uint8 and shuffled labels ``ans``."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(10), counts)).astype(np.uint8)
    images = rng.integers(0, 256, size=(len(labels), size, size, 3), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(labels)) % 256
    with h5py.File(path, "w") as handle:
        handle["images"] = images
        handle["ans"] = labels
        for key in ("ra", "dec", "redshift", "pxscale"):
            handle[key] = rng.random(len(labels))
    return images, labels.astype(np.int64)


def test_the_file_is_read_lazily_in_any_index_order(tmp_path):
    path = tmp_path / galaxy10.FILENAME
    images, labels = write_fake_galaxy10(path)
    data = galaxy10.Galaxy10File(path, sha256=file_digest(path, "sha256"))
    assert len(data) == len(labels) and torch.equal(data.labels, torch.from_numpy(labels))
    batch = data.read_images(np.array([7, 2, 7, 40]))
    assert batch.shape == (4, 3, 32, 32) and batch.dtype == torch.uint8
    assert torch.equal(batch, torch.from_numpy(images[[7, 2, 7, 40]]).permute(0, 3, 1, 2))
    data.close()


def test_a_missing_or_damaged_file_says_where_it_belongs_and_how_to_get_it(tmp_path):
    path = tmp_path / galaxy10.FILENAME
    with pytest.raises(LatentcfError, match=r"not found at .*download_galaxy10\(\)"):
        galaxy10.Galaxy10File(path)
    write_fake_galaxy10(path)
    with pytest.raises(LatentcfError, match=r"damaged or incomplete .*19aefc47"):
        galaxy10.Galaxy10File(path)
    path.write_bytes(b"not hdf5")
    with pytest.raises(LatentcfError, match="not a readable HDF5"):
        galaxy10.Galaxy10File(path, sha256=None)


def test_a_file_without_the_galaxy10_keys_is_refused(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["images"] = np.zeros((2, 8, 8, 3), dtype=np.uint8)
    with pytest.raises(LatentcfError, match=r"lacks the key\(s\) \['ans'\]"):
        galaxy10.Galaxy10File(path, sha256=None)


def test_official_split_puts_the_first_tenth_of_each_class_in_file_order_into_test():
    labels = torch.tensor([0] * 25 + [1] * 9 + [2] * 10 + [3] * 3 + list(range(4, 10)) * 10)
    train, test = galaxy10.official_split(labels)
    assert sorted(torch.cat([train, test]).tolist()) == list(range(len(labels)))
    assert test[labels[test] == 0].tolist() == [0, 1] and len(test[labels[test] == 1]) == 0
    assert test[labels[test] == 2].tolist() == [34] and len(test[labels[test] == 3]) == 0


def test_official_split_of_the_real_class_counts_gives_the_published_sizes():
    labels = torch.repeat_interleave(torch.arange(10), torch.tensor(galaxy10.CLASS_COUNTS))
    train, test = galaxy10.official_split(labels)
    assert (len(train), len(test)) == (15_967, 1_769)
    assert len(galaxy10.weak_subset(train, labels)) == 3_181


def test_weak_subset_takes_file_names_in_lexicographic_order():
    labels = torch.zeros(1200, dtype=torch.long)
    labels[1100:] = 1
    chosen = galaxy10.weak_subset(torch.arange(1200), labels, per_class=3)
    assert chosen.tolist() == [0, 1, 10, 1100, 1101, 1102]


def test_preprocess_crops_the_centre_then_resizes():
    images = torch.zeros(2, 3, 256, 256, dtype=torch.uint8)
    images[:, :, 53:203, 53:203] = 255
    x = galaxy10.preprocess(images)
    assert x.shape == (2, 3, 128, 128) and x.dtype == torch.float32
    assert torch.allclose(x, torch.ones_like(x))


def test_synthetic_set_is_seeded_balanced_like_galaxy10_and_uint8():
    first = galaxy10.synthetic_galaxy10(200, size=32, seed=3)
    again = galaxy10.synthetic_galaxy10(200, size=32, seed=3)
    other = galaxy10.synthetic_galaxy10(200, size=32, seed=4)
    assert first.images.shape == (200, 3, 32, 32) and first.images.dtype == torch.uint8
    assert torch.equal(first.images, again.images) and not torch.equal(first.images, other.images)
    counts = torch.bincount(first.labels, minlength=10)
    expected = torch.tensor(galaxy10.CLASS_COUNTS) / sum(galaxy10.CLASS_COUNTS) * 200
    assert int(counts.sum()) == 200 and bool(((counts - expected).abs() <= 1).all())


def test_neighbouring_synthetic_classes_overlap_in_their_defining_parameters():
    labels = torch.arange(10).repeat(300)
    p = galaxy10.draw_parameters(labels, 64, torch.Generator().manual_seed(0))
    for low_class, high_class, name in ((3, 2, "q"), (4, 3, "q"), (6, 7, "pitch"), (8, 9, "bulge_fraction")):
        assert p[name][labels == low_class].max() > p[name][labels == high_class].min(), (low_class, high_class)


def test_sersic_profile_is_one_at_the_half_light_radius_and_exponential_for_n_1():
    radius = torch.tensor([[[0.0, 2.0, 4.0]]])
    profile = galaxy10.sersic(radius, torch.tensor([2.0]), torch.tensor([1.0]))
    b_1 = 2 - 1 / 3 + 4 / 405
    assert torch.allclose(profile[0, 0], torch.exp(torch.tensor([b_1, 0.0, -b_1])))


def test_bad_render_requests_are_refused():
    with pytest.raises(LatentcfError, match="classes 0..9"):
        galaxy10.render_galaxies(torch.tensor([0, 10]), 32, torch.Generator())
    with pytest.raises(LatentcfError, match="at least 16"):
        galaxy10.render_galaxies(torch.tensor([0]), 8, torch.Generator())


def test_synthetic_sets_are_cached_by_their_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCF_CACHE", str(tmp_path))
    made = galaxy10.synthetic_galaxy10(20, size=16, seed=1)
    assert len(list(tmp_path.glob("galaxy10_synthetic-*.pt"))) == 1
    loaded = galaxy10.synthetic_galaxy10(20, size=16, seed=1)
    assert torch.equal(made.images, loaded.images) and torch.equal(made.labels, loaded.labels)
    galaxy10.synthetic_galaxy10(20, size=16, seed=2)
    assert len(list(tmp_path.glob("galaxy10_synthetic-*.pt"))) == 2


def test_a_corrupted_cached_synthetic_set_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCF_CACHE", str(tmp_path))
    galaxy10.synthetic_galaxy10(20, size=16, seed=1)
    next(tmp_path.glob("galaxy10_synthetic-*.pt")).write_bytes(b"broken")
    with pytest.raises(LatentcfError, match="corrupted"):
        galaxy10.synthetic_galaxy10(20, size=16, seed=1)
