import json
import re
from pathlib import Path

import pytest
import torch

from latentcf.chapters.registry import start_run
from latentcf.core import results
from latentcf.core.errors import LatentcfError
from latentcf.core.paths import project_root
from latentcf.core.results import REQUIRED_KEYS, load_results, open_run


def test_start_run_seeds_and_loads_settings():
    run = start_run("helix", "smoke", 3, "cpu")
    assert run.device == torch.device("cpu") and run.settings.scale == "smoke"
    first = torch.rand(3)
    start_run("helix", "smoke", 3, "cpu")
    torch.testing.assert_close(torch.rand(3), first)


@pytest.mark.parametrize("args, message", [
    (("nochapter", "smoke", 0, "cpu"), "unknown chapter 'nochapter'"),
    (("helix", "huge", 0, "cpu"), "unknown scale 'huge'"),
    (("helix", "smoke", 0, "tpu"), "unknown device 'tpu'"),
])
def test_start_run_rejects_bad_parameters(args, message):
    with pytest.raises(LatentcfError, match=message):
        start_run(*args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_unavailable_device_is_an_error_not_a_fallback():
    with pytest.raises(LatentcfError, match="CUDA is not available"):
        start_run("helix", "smoke", 0, "cuda")


def test_saved_results_have_every_required_key(tmp_path):
    run = start_run("helix", "smoke", 0, "cpu")
    run.record(median_distance_x=2.0, success_rate_x=torch.tensor(1.0))
    document = load_results(run.save(tmp_path))
    assert set(REQUIRED_KEYS) <= set(document)
    assert document["metrics"] == {"median_distance_x": 2.0, "success_rate_x": 1.0}
    assert document["chapter"] == "helix" and document["scale"] == "smoke" and document["seed"] == 0
    assert document["versions"]["torch"] != "not installed" and document["runtime_s"] >= 0


def test_non_finite_metrics_are_refused():
    run = start_run("helix", "smoke", 0, "cpu")
    with pytest.raises(ValueError, match="not a finite number"):
        run.record(median_distance_z=float("nan"))


def test_incomplete_results_files_are_reported(tmp_path):
    path = tmp_path / "helix.json"
    path.write_text(json.dumps({"chapter": "helix"}))
    with pytest.raises(LatentcfError, match="lacks scale"):
        load_results(path)
    path.write_text("{not json")
    with pytest.raises(LatentcfError, match="not valid JSON"):
        load_results(path)


def test_text_facts_are_recorded_as_top_level_keys_and_cannot_replace_required_ones():
    run = start_run("helix", "smoke", 0, "cpu")
    run.describe(dataset="galaxy10-synthetic")
    assert run.as_dict()["dataset"] == "galaxy10-synthetic"
    with pytest.raises(ValueError, match="fact 'metrics'"):
        run.describe(metrics="none")
    with pytest.raises(ValueError, match="fact 'dataset'"):
        run.describe(dataset=3)


def test_settings_of_another_scale_are_refused():
    paper_settings = start_run("helix", "paper", 0, "cpu").settings
    with pytest.raises(LatentcfError, match="settings of scale 'paper' handed to a smoke-scale run"):
        open_run("helix", "smoke", 0, "cpu", paper_settings)


def test_a_stage_records_its_wall_time_under_one_name():
    run = start_run("helix", "smoke", 0, "cpu")
    with run.stage("search_x"):
        sum(range(1000))
    assert set(run.metrics) == {"seconds_search_x"} and run.metrics["seconds_search_x"] >= 0
    with pytest.raises(ValueError, match="does not start with a known stage"), run.stage("training"):
        pass


def test_a_time_under_another_naming_convention_is_refused():
    run = start_run("helix", "smoke", 0, "cpu")
    with pytest.raises(ValueError, match="record a stage's time with Run.stage"):
        run.record(flow_train_s=3.0)


class FakeDistribution:
    """An installed distribution reduced to what :func:`installed_origin` reads: its version and direct_url.json."""

    def __init__(self, direct_url: str | None, version: str = "0.1.0"):
        self.direct_url, self.version = direct_url, version

    def read_text(self, name: str) -> str | None:
        return self.direct_url if name == "direct_url.json" else None


GIT_INSTALL = json.dumps({"url": "https://github.com/latentcf/latentcf-book", "subdirectory": "lib",
                          "vcs_info": {"vcs": "git", "requested_revision": "v0.1.0", "commit_id": "ab12" * 10}})


def installed_as(monkeypatch, direct_url: str | None) -> None:
    monkeypatch.setattr(results.metadata, "distribution", lambda name: FakeDistribution(direct_url))


def test_outside_a_git_checkout_the_commit_is_where_the_library_was_installed_from(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no _toc.yml above: not the book's checkout, as on Colab
    installed_as(monkeypatch, GIT_INSTALL)
    assert results.git_sha() == f"git+https://github.com/latentcf/latentcf-book@{'ab12' * 10}#subdirectory=lib"
    installed_as(monkeypatch, None)
    assert results.git_sha() == "latentcf 0.1.0 from PyPI"
    (tmp_path / "_toc.yml").write_text("root: intro\n")  # the book's files, but no git
    assert results.git_sha() == "latentcf 0.1.0 from PyPI"


@pytest.mark.parametrize("direct_url, origin", [
    (json.dumps({"url": "file:///home/me/latentcf-book/lib", "dir_info": {"editable": True}}),
     "file:///home/me/latentcf-book/lib (editable)"),
    (json.dumps({"url": "https://example.org/latentcf-0.1.0.tar.gz", "archive_info": {"hashes": {}}}),
     "https://example.org/latentcf-0.1.0.tar.gz"),
    ("{not json", "unknown"),
    (json.dumps({"vcs_info": {"vcs": "git"}}), "unknown"),
])
def test_every_kind_of_direct_install_is_named(monkeypatch, direct_url, origin):
    installed_as(monkeypatch, direct_url)
    assert results.installed_origin() == origin


def test_a_library_that_is_not_installed_has_an_unknown_origin(monkeypatch):
    def not_installed(name):
        raise results.metadata.PackageNotFoundError(name)
    monkeypatch.setattr(results.metadata, "distribution", not_installed)
    assert results.installed_origin() == "unknown"


@pytest.mark.skipif(not (project_root(Path(__file__).parent) / ".git").exists(), reason="not a git checkout")
def test_in_the_books_checkout_the_commit_is_the_checkouts(monkeypatch):
    installed_as(monkeypatch, GIT_INSTALL)
    monkeypatch.chdir(project_root(Path(__file__).parent))
    assert re.fullmatch(r"[0-9a-f]{40}", results.git_sha())


def test_a_table_shortens_a_commit_but_shows_any_other_origin_whole():
    from latentcf.core.results import short_commit

    assert short_commit("0123456789abcdef0123456789abcdef01234567") == "0123456789"
    assert short_commit("latentcf 0.1.0 from PyPI") == "latentcf 0.1.0 from PyPI"
