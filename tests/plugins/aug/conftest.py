"""Fixtures for the augmentation tests: one intra-op thread per test module.

The tensors here are tiny: on a loaded 2-core machine, intra-op threads that spin-wait
only add contention. The setting is restored after each module so that other test
directories are unaffected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
