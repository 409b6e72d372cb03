"""Shared fixtures: RNG isolation around every test, CPU thread cap, a gpu auto-skip."""

from __future__ import annotations

import pytest
import torch

# Tests use tiny tensors: one intra-op thread avoids OpenMP oversubscription (busy-waiting
# threads made the suite 2x slower on the 2-core CI machine) and makes timings of runs comparable.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolate_rng():
    """Each test starts from the same seed and leaves the global RNG as it found it."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    yield
    torch.set_rng_state(state)


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
