"""The paper scale's dry run: options, step cap, cache marks, fabricated data, weight refusal, mixed precision."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from latentcf.book.reproduce import missing_metrics, named_metrics, undefined_metrics
from latentcf.chapters import galaxy_leap, helix
from latentcf.core import weights
from latentcf.core.cache import cache_path
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import project_root
from latentcf.core.results import open_run
from latentcf.core.runtime import DRY_RUN_STEPS, RUN_OPTIONS_ENV, RunOptions, run_options
from latentcf.core.training import autocast, fit
from latentcf.data import galaxy10, mnist
from latentcf.data.dry_run import first_per_class
from latentcf.data.fabricate import fabricate_data, fabricate_galaxy10, fabricate_mnist
from latentcf.models.mnist_nets import ConvVAE, MnistCNN, MorphoClassifier, MorphoVAE, morpho_vae_loss
from latentcf.models.vgg import VGG16BN
from latentcf.models.wae import PatchDiscriminator, ResidualWAE

ROOT = project_root(Path(__file__).parent)


def use_options(monkeypatch, **options) -> None:
    monkeypatch.setenv(RUN_OPTIONS_ENV, RunOptions(**options).environment()[RUN_OPTIONS_ENV])


def test_run_options_travel_through_the_environment_and_refuse_garbage(monkeypatch):
    assert run_options() == RunOptions()
    use_options(monkeypatch, dry_run=True, allow_missing_weights=True)
    assert run_options() == RunOptions(dry_run=True, allow_missing_weights=True)
    monkeypatch.setenv(RUN_OPTIONS_ENV, '{"dry_run": true, "turbo": 1}')
    with pytest.raises(LatentcfError, match="not a valid set of run options"):
        run_options()


def test_a_dry_run_stops_training_after_a_couple_of_steps_and_caches_apart(monkeypatch):
    model = nn.Linear(2, 1)
    key_real = cache_path("m", {"lr": 1}, model)
    use_options(monkeypatch, dry_run=True)
    info = fit(model, lambda _: model(torch.ones(4, 2)).pow(2).mean(), 1000, 1e-2, "test")
    assert len(info["loss"]) == DRY_RUN_STEPS
    assert cache_path("m", {"lr": 1}, model) != key_real


def test_a_dry_run_records_undefined_statistics_as_null_and_a_real_run_refuses_them(monkeypatch):
    settings = helix.PAPER
    with pytest.raises(ValueError, match="not a finite number"):
        open_run("helix", "paper", 0, "cpu", settings).record(median_distance_x=float("nan"))
    use_options(monkeypatch, dry_run=True)
    run = open_run("helix", "paper", 0, "cpu", settings)
    run.record(median_distance_x=float("nan"))
    document = run.as_dict()
    assert document["dry_run"] is True and document["metrics"]["median_distance_x"] is None
    with pytest.raises(LatentcfError, match="use it with --scale paper"):
        open_run("helix", "smoke", 0, "cpu", dataclasses.replace(settings, scale="smoke"))


def test_the_presence_check_names_what_a_dry_run_did_not_record():
    names = named_metrics("helix")
    document = {"chapter": "helix", "dry_run": True, "metrics": {name: 1.0 for name in names}}
    assert missing_metrics(document) == []
    document["metrics"].pop("median_distance_z")
    document["metrics"]["success_rate_x"] = None
    assert missing_metrics(document) == ["median_distance_z"]
    assert undefined_metrics(document) == ["success_rate_x"]
    assert missing_metrics({**document, "dry_run": False}) == ["median_distance_z", "success_rate_x"]


def test_fabricated_mnist_is_read_by_the_real_loader_in_a_dry_run_only(monkeypatch, tmp_path):
    folder = fabricate_mnist(tmp_path / "mnist", per_class=3)
    monkeypatch.setattr(mnist, "download_mnist", lambda *_: pytest.fail("a dry run must not download"))
    use_options(monkeypatch, dry_run=True, fabricated_data=str(tmp_path))
    train = mnist.load_mnist("train", source="full")
    assert train.images.shape == (30, 28, 28) and sorted(train.labels.bincount().tolist()) == [3] * 10
    assert "fabricated" in train.description
    use_options(monkeypatch, fabricated_data=str(tmp_path))
    with pytest.raises(LatentcfError, match="is not the official file"):
        mnist._read_pair(folder, "train", "fix")


def test_fabricated_galaxy10_has_the_official_layout_and_is_cut_per_class(monkeypatch, tmp_path):
    folder = fabricate_galaxy10(tmp_path / "galaxy10", per_class=2)
    with h5py.File(folder / galaxy10.FILENAME) as handle:
        assert handle["images"].shape == (20, 256, 256, 3) and handle["images"].dtype == np.uint8
        assert handle["ans"].shape == (20,)
    with pytest.raises(LatentcfError, match="damaged or incomplete"):
        galaxy10.Galaxy10File(folder / galaxy10.FILENAME)
    monkeypatch.setattr(galaxy10, "galaxy10_path", lambda: tmp_path / "absent" / galaxy10.FILENAME)
    use_options(monkeypatch, dry_run=True, fabricated_data=str(tmp_path))
    source = galaxy10.open_galaxy10()
    assert len(source) == 20 and source.read_images(torch.tensor([0, 3])).shape == (2, 3, 256, 256)
    assert "fabricated stand-in" in source.description


def test_fabricate_data_makes_only_what_is_missing_and_refuses_unknown_sets(monkeypatch, tmp_path):
    monkeypatch.setattr("latentcf.data.fabricate.mnist_dir", lambda: tmp_path / "real")
    sentences = fabricate_data(tmp_path / "fake", ("mnist",), per_class=1)
    assert len(sentences) == 1 and "fabricated IDX files" in sentences[0]
    assert not (tmp_path / "fake" / "galaxy10").exists()
    with pytest.raises(LatentcfError, match="unknown data set"):
        fabricate_data(tmp_path / "fake", ("cifar",))


def test_first_per_class_keeps_file_order():
    labels = torch.tensor([1, 0, 1, 1, 0, 2])
    assert first_per_class(labels, 2).tolist() == [0, 1, 2, 4, 5]


def test_missing_published_weights_are_refused_with_their_path_unless_allowed(monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *_, **__: (_ for _ in ()).throw(OSError()))
    wanted = [weights.PublishedWeights("ImageNet VGG16-BN", "https://example.org/vgg16_bn-6c64b313.pth")]
    with pytest.raises(LatentcfError, match=r"vgg16_bn-6c64b313\.pth.*--allow-missing-weights") as error:
        weights.require_published(wanted, "the paper scale")
    assert str(wanted[0].path) in str(error.value)
    use_options(monkeypatch, allow_missing_weights=True)
    assert weights.require_published(wanted, "the paper scale") == ["ImageNet VGG16-BN"]


def test_published_weights_in_the_hub_cache_are_not_loaded_twice(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *_, **__: pytest.fail("loaded to check"))
    cached = weights.PublishedWeights("LPIPS heads", "https://example.org/w.pth", "lpips.pth")
    cached.path.parent.mkdir(parents=True)
    cached.path.write_bytes(b"weights")
    assert weights.require_published([cached], "the paper scale") == []


def test_the_galaxy_paper_scale_refuses_to_start_without_its_weights(monkeypatch):
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *_, **__: (_ for _ in ()).throw(OSError()))
    with pytest.raises(LatentcfError, match="ImageNet VGG16-BN.*LPIPS heads"):
        galaxy_leap.load_data(galaxy_leap.PAPER, "cpu")


CONV_NETS = {
    "MnistCNN": (MnistCNN, lambda net, x: nn.functional.cross_entropy(net(x), torch.zeros(len(x), dtype=torch.long))),
    "ConvVAE": (ConvVAE, lambda net, x: net.loss(x)),
    "MorphoClassifier": (MorphoClassifier,
                         lambda net, x: nn.functional.cross_entropy(net(x), torch.zeros(len(x), dtype=torch.long))),
    "MorphoVAE": (MorphoVAE, lambda net, x: morpho_vae_loss(net, x)),
}


@pytest.mark.parametrize("name", CONV_NETS)
def test_bf16_autocast_trains_the_mnist_networks_with_finite_losses(name):
    build, loss = CONV_NETS[name]
    torch.manual_seed(0)
    net, x = build(), torch.rand(4, 1, 28, 28)
    info = fit(net, lambda _: loss(net, x), 2, 1e-3, name, precision="bf16")
    assert all(np.isfinite(info["loss"]))


def test_bf16_autocast_trains_the_galaxy_networks_with_finite_losses():
    torch.manual_seed(0)
    x = torch.rand(2, 3, 32, 32)
    classifier = VGG16BN(10, width=1 / 16, hidden=16, imagenet_input=True)
    wae = ResidualWAE(32, 8, (4, 8), 16)
    critic = PatchDiscriminator(4)
    assert np.isfinite(fit(classifier, lambda _: nn.functional.cross_entropy(classifier(x), torch.tensor([0, 1])),
                           2, 1e-3, "vgg", precision="bf16")["loss"]).all()
    assert np.isfinite(fit(wae, lambda _: (wae(x)[0] - x).pow(2).mean() + critic(wae(x)[0]).mean(), 2, 1e-3, "wae",
                           precision="bf16")["loss"]).all()
    with autocast(torch.device("cpu"), "bf16"):
        assert classifier(x).dtype == torch.bfloat16
    with pytest.raises(LatentcfError, match="unknown precision"):
        autocast(torch.device("cpu"), "fp8")


def _dry_run_helix(cache: Path, out: Path, kill_after_first_model: bool = False) -> dict | None:
    """``reproduce helix --scale paper --dry-run`` in a subprocess; optionally killed once a model is cached."""
    env = {**os.environ, "LATENTCF_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    env.pop(RUN_OPTIONS_ENV, None)
    env.pop("LATENTCF_RESULTS_DIR", None)
    command = [sys.executable, "-c", "import sys; from pathlib import Path; from latentcf.book.reproduce import "
               "reproduce; from latentcf.core.runtime import RunOptions; reproduce(['helix'], 'paper', 'cpu', 0, "
               f"False, out=Path({str(out)!r}), options=RunOptions(dry_run=True))"]
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after_first_model:
        deadline = time.monotonic() + 300
        while not list(cache.glob("*.pt")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None
    assert process.wait(timeout=600) == 0
    return json.loads((out / "results" / "helix.json").read_text())


def test_an_interrupted_dry_run_resumes_from_its_cached_stages(tmp_path):
    interrupted_cache = tmp_path / "interrupted"
    _dry_run_helix(interrupted_cache, tmp_path / "first", kill_after_first_model=True)
    cached = {path: path.stat().st_mtime_ns for path in interrupted_cache.glob("*.pt")}
    assert cached, "the run was killed before it cached its first model"
    assert not (tmp_path / "first" / "results" / "helix.json").exists(), "the run finished before it was killed"
    resumed = _dry_run_helix(interrupted_cache, tmp_path / "resumed")
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in cached.items()), "a finished stage was redone"
    uninterrupted = _dry_run_helix(tmp_path / "fresh", tmp_path / "fresh-out")
    numbers = {key: value for key, value in uninterrupted["metrics"].items() if not key.startswith("seconds_")}
    assert {key: resumed["metrics"][key] for key in numbers} == numbers
    assert resumed["dry_run"] is True
