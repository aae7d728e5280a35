"""The GitHub Actions workflows: clean under actionlint and zizmor, and with the jobs and permissions the book needs.

actionlint (with shellcheck for the ``run:`` scripts) and zizmor (offline, its strictest persona) come with the
set-up (``requirements.txt``); their configurations are ``.github/actionlint.yaml`` and ``.github/zizmor.yml``.
Both are also run on a workflow broken on purpose, so that a tool that checks nothing cannot pass.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from latentcf.core.paths import project_root

ROOT = project_root(Path(__file__).parent)
GITHUB = ROOT / ".github"
WORKFLOWS = sorted((GITHUB / "workflows").glob("*.yml"))
TOOL_TIMEOUT_S = 120
BROKEN_WORKFLOW = """\
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}" ${{ matrix.missing }}
"""


def tool(name: str) -> str:
    """The command ``name`` beside this environment's python, else on PATH; fails the test where there is none."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: the set-up installs it from requirements.txt (make setup)")
    return found


def actionlint(files: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"),
                           "-config-file", str(GITHUB / "actionlint.yaml"), *map(str, files)],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


def zizmor(folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([tool("zizmor"), "--offline", "--no-progress", "--color", "never", "--persona", "auditor",
                           "--config", str(GITHUB / "zizmor.yml"), str(folder)],
                          capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)


def load(name: str) -> dict:
    """A workflow as a dict, with its ``on:`` under ``"on"`` (YAML 1.1 reads the bare key as ``True``)."""
    workflow = yaml.safe_load((GITHUB / "workflows" / name).read_text())
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def uses(job: dict) -> list[str]:
    """The actions a job's steps use, without their pinned commits."""
    return [step["uses"].split("@")[0] for step in job["steps"] if "uses" in step]


def test_actionlint_finds_nothing():
    result = actionlint(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_finds_nothing():
    result = zizmor(GITHUB / "workflows")
    assert result.returncode == 0, result.stdout + result.stderr


def test_both_tools_name_the_mistakes_of_a_broken_workflow(tmp_path):
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    broken.parent.mkdir(parents=True)
    broken.write_text(BROKEN_WORKFLOW)
    linted = actionlint([broken])
    assert linted.returncode != 0 and "broken.yml" in linted.stdout
    assert "matrix" in linted.stdout and "potentially untrusted" in linted.stdout
    audited = zizmor(broken.parent)
    assert audited.returncode != 0
    for audit in ("template-injection", "unpinned-uses", "dangerous-triggers", "excessive-permissions"):
        assert audit in audited.stdout, audited.stdout


def test_only_the_deploy_and_publish_jobs_get_more_than_reading_the_repository():
    granted = {}
    for path in WORKFLOWS:
        workflow = load(path.name)
        assert workflow["permissions"] == {"contents": "read"}, f"{path.name}: top-level permissions"
        granted.update({f"{path.stem}.{name}": job.get("permissions", {}) for name, job in workflow["jobs"].items()})
    writing = {job: permissions for job, permissions in granted.items() if permissions}
    assert writing == {"cpu.deploy": {"pages": "write", "id-token": "write"},
                       "gpu.deploy": {"pages": "write", "id-token": "write"},
                       "release.github-release": {"contents": "write"}, "release.pypi": {"id-token": "write"}}


def test_every_push_to_main_builds_the_smoke_book_and_deploys_it():
    cpu = load("cpu.yml")
    assert cpu["on"]["push"]["branches"] == ["main"] and "make book" in (ROOT / ".ci" / "run").read_text()
    smoke, deploy = cpu["jobs"]["smoke"], cpu["jobs"]["deploy"]
    assert any(step.get("run") == "bash .ci/run" for step in smoke["steps"])
    upload = next(step for step in smoke["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "build/_build/html" and "refs/heads/main" in upload["if"]
    assert deploy["needs"] == "smoke" and "refs/heads/main" in deploy["if"]
    assert uses(deploy) == ["actions/deploy-pages"] and deploy["environment"]["name"] == "github-pages"


def test_the_paper_scale_book_replaces_it_only_after_a_successful_gpu_run():
    gpu = load("gpu.yml")
    paper, deploy = gpu["jobs"]["paper"], gpu["jobs"]["deploy"]
    upload = next(step for step in paper["steps"] if step.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "build/paper/_build/html" and "if" not in upload
    assert deploy["needs"] == "paper" and "if" not in deploy, "deploy must run only when the paper job succeeded"
    assert uses(deploy) == ["actions/deploy-pages"]


def test_a_version_tag_is_checked_built_attached_and_published():
    release = load("release.yml")
    assert release["on"] == {"push": {"tags": ["v*"]}}
    build = release["jobs"]["build"]
    scripts = "\n".join(step.get("run", "") for step in build["steps"])
    for command in ('"$TAG" != "v$version"', "python -m build lib", "twine check --strict dist/*"):
        assert command in scripts
    assert "gh release upload" in release["jobs"]["github-release"]["steps"][-1]["run"]
    pypi = release["jobs"]["pypi"]
    assert uses(pypi)[-1] == "pypa/gh-action-pypi-publish" and pypi["environment"]["name"] == "pypi"
