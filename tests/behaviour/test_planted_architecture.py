"""The architecture search finds an op that is right by construction (tests/behaviour/planted.py).

Only ``ch<informative>`` carries the label, so a search that learns from the data selects
it; the seeded random start does not.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dha_core.searcher import build
from tests.behaviour.planted import GROUP, planted_config, register_planted

SEEDS = range(5)


@pytest.fixture(autouse=True)
def _planted() -> Iterator[None]:
    yield from register_planted()


def _search(tmp_path: Path, relax: dict[str, Any], informative: int, seed: int) -> tuple[int, int]:
    """Runs one search; returns (initially selected op, finally selected op)."""
    summary = build(config=planted_config(tmp_path / relax["name"] / str(informative), relax, informative,
                                          seed)).fit().summary
    initial = summary["arch"]["initial_selection"][GROUP]
    final = summary["selection"][GROUP]
    assert len(initial) == len(final) == 1
    return int(initial[0][1]), int(final[0][1])


@pytest.mark.parametrize("relax", [{"name": "ista"}, {"name": "softmax", "order": "first"}], ids=["ista", "softmax"])
def test_search_selects_the_planted_op_across_seeds(tmp_path: Path, relax: dict[str, Any]) -> None:
    informative = 2
    runs = [_search(tmp_path, relax, informative, seed) for seed in SEEDS]
    found = sum(final == informative for _, final in runs)
    at_start = sum(initial == informative for initial, _ in runs)
    assert found >= 4, f"{relax['name']}: planted op selected in {found}/5 seeds (initial, final): {runs}"
    assert at_start < 4, f"the random start already holds the planted op in {at_start}/5 seeds: {runs}"
    assert found > at_start


def test_ista_without_movement_keeps_its_random_start(tmp_path: Path) -> None:
    """The control: with a code that cannot move (and no probes) the support stays where it
    started, so the test above measures the search, not the initialisation."""
    relax = {"name": "ista", "lr": 1e-9, "probes": 0}
    runs = [_search(tmp_path, relax, 2, seed) for seed in SEEDS]
    assert all(initial == final for initial, final in runs), runs


def test_different_planted_tasks_give_different_genotypes(tmp_path: Path) -> None:
    relax = {"name": "ista"}
    finals = {informative: [_search(tmp_path, relax, informative, seed)[1] for seed in (0, 1, 2)]
              for informative in (1, 3)}
    assert finals[1] != finals[3]
    assert sum(op == 1 for op in finals[1]) >= 2 and sum(op == 3 for op in finals[3]) >= 2, finals
