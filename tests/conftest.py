"""Shared fixtures."""

import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny step loops: a second thread only adds synchronisation (and spins on a busy machine).
    Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
