import json

import pytest
import torch

from latentcf.chapters.registry import start_run
from latentcf.core.errors import LatentcfError
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
