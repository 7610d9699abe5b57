"""Fixtures for the search-space tests: one intra-op thread, fixed seeds.

A single thread avoids OpenMP spin-waiting on a loaded 2-core machine, where tiny
convolutions otherwise run orders of magnitude slower. The setting is restored after
every test so that other test directories are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread_seeded() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
