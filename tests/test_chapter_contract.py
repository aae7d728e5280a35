"""The chapter contract (``lib/README.md``, "Adding a chapter"), checked for every registered chapter."""

import ast
import dataclasses
import inspect
import io
import re
import tokenize

import pytest

from latentcf.chapters.registry import CHAPTERS
from latentcf.core.claims import RELATIONS
from latentcf.core.paths import project_root
from latentcf.core.settings import check_settings

ROOT = project_root(__import__("pathlib").Path(__file__).parent)
NAMES = list(CHAPTERS)
TRAIN_PARAMETERS = ["data", "settings", "seed", "device"]


def smoke_overrides(source: str) -> dict[str, str | None]:
    """``{field: comment}`` of ``SMOKE = dataclasses.replace(PAPER, ...)``; raises if SMOKE is built otherwise."""
    comments = {token.start[0]: token.string for token in tokenize.generate_tokens(io.StringIO(source).readline)
                if token.type == tokenize.COMMENT}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["SMOKE"]:
            call = node.value
            function = call.func.attr if isinstance(call.func, ast.Attribute) else getattr(call.func, "id", None)
            if function != "replace" or [getattr(a, "id", None) for a in call.args] != ["PAPER"]:
                raise AssertionError("SMOKE is not dataclasses.replace(PAPER, ...)")
            return {kw.arg: next((comments[line] for line in range(kw.lineno, kw.value.end_lineno + 1)
                                  if line in comments), None) for kw in call.keywords}
    raise AssertionError("no SMOKE = dataclasses.replace(PAPER, ...) at module level")


def override_problems(source: str, paper, smoke) -> list[str]:
    """Overrides without a reason, and fields that differ without being overridden (or the reverse)."""
    overrides = smoke_overrides(source)
    problems = [f"SMOKE overrides '{name}' without a comment giving the reason"
                for name, comment in overrides.items() if name != "scale" and not comment]
    differing = {f.name for f in dataclasses.fields(paper) if getattr(paper, f.name) != getattr(smoke, f.name)}
    if differing != set(overrides):
        problems.append(f"overridden {sorted(overrides)} but differing {sorted(differing)}")
    return problems


def random_stream_problems(source: str) -> list[str]:
    """Seed offsets (``seed + 1``) and hand-seeded generators instead of named streams."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)) and any(
                isinstance(side, ast.Name) and side.id == "seed" for side in (node.left, node.right)):
            problems.append(f"line {node.lineno}: a seed offset; use latentcf.core.runtime.generator(seed, name)")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "manual_seed":
            problems.append(f"line {node.lineno}: manual_seed; use a named stream")
    return problems


def reference_problems(text: str) -> list[str]:
    """References to documents a reader does not have (the specs) and the old class-count name."""
    problems = [f"mentions a spec: ...{m.group(0)}..." for m in re.finditer(r".{0,30}\bspecs?\b.{0,30}", text, re.I)]
    return problems + [f"N_CLASSES instead of NUM_CLASSES at {m.start()}"
                       for m in re.finditer(r"(?<![A-Z_])N_CLASSES", text)]


@pytest.mark.parametrize("name", NAMES)
def test_settings_are_paper_and_a_commented_smoke_replacement(name):
    module = CHAPTERS[name].module
    paper, smoke = module.PAPER, module.SMOKE
    assert type(paper) is type(smoke) and type(paper).__dataclass_params__.frozen
    assert (paper.scale, smoke.scale) == ("paper", "smoke")
    check_settings(paper)
    assert override_problems(inspect.getsource(module), paper, smoke) == []


def dry_run_problems(paper, dry_run) -> list[str]:
    """A dry run is the paper scale with only sizes cut: same type, scale "paper", smaller integers only (counts of
    items, batches, runs and steps; 0 for an evaluation whose one item costs hours on a CPU)."""
    if type(dry_run) is not type(paper) or dry_run.scale != "paper":
        return ["DRY_RUN is not the paper settings of the chapter"]
    problems = []
    for field in dataclasses.fields(paper):
        cut, full = getattr(dry_run, field.name), getattr(paper, field.name)
        if cut != full and not (type(cut) is int and type(full) is int and 0 <= cut < full):
            problems.append(f"DRY_RUN changes '{field.name}' ({full!r} -> {cut!r}), which is not a count it cuts")
    return problems


@pytest.mark.parametrize("name", NAMES)
def test_the_dry_run_is_the_paper_scale_with_counts_cut(name):
    module = CHAPTERS[name].module
    assert dry_run_problems(module.PAPER, module.DRY_RUN) == []
    assert CHAPTERS[name].settings("paper", dry_run=True) is module.DRY_RUN


@pytest.mark.parametrize("name", NAMES)
def test_training_functions_take_data_settings_seed_device(name):
    module = CHAPTERS[name].module
    functions = {n: f for n, f in inspect.getmembers(module, inspect.isfunction)
                 if n.startswith("train_") and f.__module__ == module.__name__}
    assert functions, f"{name} has no train_* function"
    for function_name, function in functions.items():
        parameters = list(inspect.signature(function).parameters.values())
        assert [p.name for p in parameters[:4]] == TRAIN_PARAMETERS, function_name
        assert all(p.kind is p.KEYWORD_ONLY for p in parameters[4:]), f"{function_name}: extras after * only"
    assert list(inspect.signature(module.load_data).parameters) == ["settings", "device"]


@pytest.mark.parametrize("name", NAMES)
def test_randomness_comes_from_named_streams(name):
    assert random_stream_problems(inspect.getsource(CHAPTERS[name].module)) == []


@pytest.mark.parametrize("name", NAMES)
def test_references_are_ones_a_reader_can_follow(name):
    chapter = CHAPTERS[name]
    text = inspect.getsource(chapter.module) + (ROOT / chapter.notebook).with_suffix(".py").read_text()
    assert reference_problems(text) == []


@pytest.mark.parametrize("name", NAMES)
def test_the_notebook_imports_its_chapter_by_name_and_opens_the_run_from_the_registry(name):
    source = (ROOT / CHAPTERS[name].notebook).with_suffix(".py").read_text()
    assert re.search(rf"^from latentcf\.chapters import .*\b{name}\b", source, re.M)
    assert f'start_run("{name}", SCALE, SEED, DEVICE)' in source
    assert f"{name}.load_data(settings, device)" in source
    assert not re.search(r"^(from|import) latentcf.* as \w+", source, re.M), "no aliases for library modules"
    assert "run.stage(" in source, "stage times are recorded with run.stage"


@pytest.mark.parametrize("name", NAMES)
def test_the_chapter_is_in_the_table_of_contents_and_has_relations(name):
    assert f"file: notebooks/{name}\n" in (ROOT / "_toc.yml").read_text()
    assert any(relation.chapter == name for relation in RELATIONS)


BROKEN_CHAPTER = '''
import dataclasses

PAPER = Settings(scale="paper", flow_steps=100, flow_lr=1e-3)
SMOKE = dataclasses.replace(
    PAPER,
    scale="smoke",
    flow_steps=10,
)


def train_flow(data, settings, seed, device):
    generator = torch.Generator().manual_seed(seed + 1)
    return N_CLASSES  # see spec Section 2.3
'''


def test_the_checks_catch_a_chapter_that_breaks_the_contract():
    @dataclasses.dataclass(frozen=True)
    class Settings:
        scale: str
        flow_steps: int
        flow_lr: float

    paper = Settings("paper", 100, 1e-3)
    problems = override_problems(BROKEN_CHAPTER, paper, dataclasses.replace(paper, scale="smoke", flow_steps=10,
                                                                          flow_lr=1.0))
    assert problems[0] == "SMOKE overrides 'flow_steps' without a comment giving the reason"
    assert "differing ['flow_lr', 'flow_steps', 'scale']" in problems[1]
    assert len(random_stream_problems(BROKEN_CHAPTER)) == 2
    assert dry_run_problems(paper, dataclasses.replace(paper, flow_lr=1e-2)) == [
        "DRY_RUN changes 'flow_lr' (0.001 -> 0.01), which is not a count it cuts"]
    assert dry_run_problems(paper, dataclasses.replace(paper, flow_steps=200))[0].startswith("DRY_RUN changes")
    assert dry_run_problems(paper, dataclasses.replace(paper, scale="smoke")) == [
        "DRY_RUN is not the paper settings of the chapter"]
    assert len(reference_problems(BROKEN_CHAPTER)) == 2
