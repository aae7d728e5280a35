"""The paper-scale time projection: work models, projection arithmetic, a real measurement, the book's table."""

import json
import math
import time

import pytest
import torch

from latentcf.book import bench
from latentcf.chapters import galaxy_leap, helix, mnist_diffeo, registry
from latentcf.chapters.registry import CHAPTERS, Chapter
from latentcf.core.errors import LatentcfError


def fixed_rate(units_per_s: float):
    """A fake ``measure`` that returns ``units_per_s`` without timing anything."""
    return lambda probe: bench.Rate(units_per_s, 4, 8)


@pytest.mark.parametrize("name", list(CHAPTERS))
def test_every_registered_chapter_has_a_work_model_of_positive_units_from_its_paper_settings(name):
    chapter = CHAPTERS[name]
    stages = bench.work_models([chapter])[name]
    assert stages and len({stage.name for stage in stages}) == len(stages)
    assert all(stage.units > 0 and math.isfinite(stage.units) and stage.unit for stage in stages)
    smoke = bench.WORK_MODELS[name](chapter.module.SMOKE)
    assert [stage.units for stage in smoke] != [stage.units for stage in stages], "units must follow the settings"


def test_the_units_are_the_paper_settings_counted_out():
    by_name = {stage.name: stage.units for stage in bench.helix_work(helix.PAPER)}
    assert by_name["flow (RealNVP)"] == helix.PAPER.flow_steps and by_name["search in Z"] == helix.PAPER.search_n
    diffeo = {stage.name: stage.units for stage in bench.mnist_diffeo_work(mnist_diffeo.PAPER)}
    assert diffeo["flow (RealNVP)"] == 30 * 938  # 30 epochs of 60,000 images in batches of 64
    sizes = bench.galaxy_sizes(galaxy_leap.PAPER)
    assert (sizes.images, sizes.train, sizes.test, sizes.weak) == (17_736, 15_967, 1_769, 3_181)
    assert bench.galaxy_leaps(galaxy_leap.PAPER) == 9 * 3_181 * 350 + 8 * 9 * 320 * 300


def test_a_chapter_without_a_work_model_is_named(monkeypatch):
    monkeypatch.setitem(registry.CHAPTERS, "ghost", Chapter("ghost", "ghost", helix))
    with pytest.raises(LatentcfError, match="no work model for chapter .*'ghost'"):
        bench.bench(["all"], "cpu")


def test_a_projection_divides_units_by_rates_and_sums_per_chapter():
    work = {"a": [bench.Stage("train", "training steps", 100, fixed_rate(10.0)),
                  bench.Stage("leap", "leaps", 30, fixed_rate(3.0))],
            "b": [bench.Stage("score", "images", 50, fixed_rate(25.0))]}
    document = bench.project(work, bench.Probe(torch.device("cpu")))
    assert document["chapters"] == {"a": 20.0, "b": 2.0} and document["total_s"] == 22.0
    assert [row["projected_s"] for row in document["stages"]] == [10.0, 10.0, 2.0]
    assert document["stages"][0]["measured_batch"] == 4 and document["stages"][0]["paper_batch"] == 8
    text = bench.format_table(document)
    assert text.splitlines()[1].split() == ["a", "train", "training", "steps", "100", "4", "of", "8", "10", "10", "s"]
    assert text.splitlines()[3].split() == ["a", "total", "20", "s"]
    assert text.splitlines()[-1].split() == ["all", "total", "22", "s"]


@pytest.mark.parametrize("seconds, text", [(4.2, "4.2 s"), (42, "42 s"), (720, "12 min"), (3 * 3600, "3.0 h"),
                                           (3 * 86_400, "3.0 days")])
def test_durations_read_as_words(seconds, text):
    assert bench.duration(seconds) == text


def test_a_real_measurement_of_a_cheap_stage_is_quick_and_positive():
    stage = next(s for s in bench.helix_work(helix.PAPER) if s.name == "classifier")
    started = time.perf_counter()
    rate = stage.measure(bench.Probe(torch.device("cpu"), seconds=0.2))
    assert rate.units_per_s > 0 and rate.batch == rate.full_batch == helix.PAPER.classifier_batch
    assert time.perf_counter() - started < 5


def test_a_slow_stage_is_timed_at_a_smaller_batch():
    def make_run(batch):
        def run(repeats):
            time.sleep(0.01 * batch * repeats)
            return repeats * batch / 64
        return run

    rate = bench.batched_rate(make_run, 64, bench.Probe(torch.device("cpu"), seconds=0.2))
    assert rate.batch < 64 and rate.full_batch == 64
    assert rate.units_per_s == pytest.approx(1 / (0.01 * 64), rel=0.3)


def test_the_book_shows_the_committed_projections(tmp_path):
    document = bench.project({"helix": [bench.Stage("flow", "training steps", 5000, fixed_rate(10.0))]},
                             bench.Probe(torch.device("cpu")))
    document.update(device="cpu (2 cores)", note="shared", torch="2", threads=1, date="2025-01-01",
                    git_sha="abcdef0123456", seconds_per_stage=3.0)
    folder = tmp_path / "bench"
    page = tmp_path / "reproduce.md"
    page.write_text(f"# Costs\n\n{bench.MARKER}\n")
    bench.fill_projections_page(page, folder)
    assert "No projection has been committed yet" in page.read_text()
    folder.mkdir()
    (folder / "cpu.json").write_text(json.dumps(document))
    page.write_text(f"# Costs\n\n{bench.MARKER}\n")
    bench.fill_projections_page(page, folder)
    text = page.read_text()
    assert "### cpu (2 cores)" in text and "Measured on cpu (2 cores) (shared) with torch 2 on 1 thread(s)" in text
    assert "| helix | flow | training steps | 5,000 | 4 of 8 | 10 | 8 min |" in text
    assert "| **helix** | **total** |" in text


def test_the_committed_cpu_projection_covers_every_chapter_with_a_work_model():
    document = json.loads((bench.committed_dir() / "cpu.json").read_text())
    assert "2-core" in document["note"] and document["device"].startswith("cpu")
    assert set(bench.WORK_MODELS) <= set(document["chapters"])
    assert document["total_s"] == pytest.approx(sum(document["chapters"].values()))
    for row in document["stages"]:
        paper = bench.work_models([CHAPTERS[row["chapter"]]])[row["chapter"]]
        assert row["units"] == next(stage.units for stage in paper if stage.name == row["stage"])


def test_a_page_without_the_marker_is_refused(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# no marker\n")
    with pytest.raises(LatentcfError, match="bench-table"):
        bench.fill_projections_page(page, tmp_path)


def test_the_cpu_has_a_plain_file_name():
    assert bench.device_name(torch.device("cpu")) == "cpu"
