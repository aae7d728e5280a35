"""The host allocator policy of :func:`latentcf.core.runtime.configure_device`."""

import subprocess
import sys

import pytest

PAGE_FAULTS_PER_STEP = """
import resource, sys, torch
from latentcf.core.runtime import reuse_host_memory
from latentcf.models.flows import HELIX_KEEP_MASKS, coupling_flow, flow_nll
if sys.argv[1] == "reuse" and not reuse_host_memory():
    raise SystemExit("reuse_host_memory found no glibc")
torch.manual_seed(0)
flow = coupling_flow(HELIX_KEEP_MASKS[:4], 256)
x = torch.randn(500, 3)
def step():
    flow.zero_grad(set_to_none=True)
    flow_nll(flow, x).backward()
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


def page_faults_per_step(policy: str) -> float:
    """Minor page faults per training step of a 4-coupling helix flow, in a fresh process."""
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS_PER_STEP, policy], check=True,
                         capture_output=True, text=True)
    return float(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc policy")
def test_reusing_host_memory_stops_the_page_faults_of_each_training_step():
    default, reuse = page_faults_per_step("default"), page_faults_per_step("reuse")
    assert default > 1000, f"the default allocator faulted only {default} pages a step: nothing to show"
    assert reuse < default / 5, f"{reuse} page faults a step with reuse, {default} without"
