"""Fixtures shared by the partitioning and pipeline-training tests (imported by those modules)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Torch runs single-threaded during each test (the models are tiny, and on a busy 2-core
    machine intra-op threads only contend); the thread count is restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
