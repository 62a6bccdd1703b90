"""Shared by the fine-tuning loop tests."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread, as every adaptation task runs (float results can depend on the count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
