"""Shared test set-up: one torch thread (tiny tensors), and caches and results in temporary folders."""

import pytest
import torch


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCF_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LATENTCF_RESULTS_DIR", str(tmp_path / "results"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
