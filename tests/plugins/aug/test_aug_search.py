"""``aug=kornia`` inside a (tiny) search: metrics, summary, plot and checkpoint carry the policy."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch

import dha_core
from tests.conftest import tiny_raw_config


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: on a shared 2-core machine, 2 intra-op threads make this 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_kornia_policy_in_a_tiny_search(tmp_path: Path) -> None:
    raw = tiny_raw_config(tmp_path / "runs", aug={"name": "kornia", "temperature": 1.0, "lr": 50.0})
    dha_core.build(config=raw, output={"dir": str(tmp_path / "runs"), "name": "r"}).fit()
    run = tmp_path / "runs" / "r"

    rows = list(csv.DictReader((run / "metrics.csv").open()))
    entropies = [float(r["policy/entropy"]) for r in rows if r.get("policy/entropy")]
    assert entropies and entropies[-1] < entropies[0] <= math.log(196) + 1e-4  # tau moved away from uniform

    policy = json.loads((run / "summary.json").read_text())["policy"]
    assert policy["policy"] == "pair" and len(policy["ops"]) == 14
    assert policy["entropy"] < policy["max_entropy"]
    assert policy["top"][0]["prob"] > 1 / 196
    assert (run / "plots" / "policy_tau.png").is_file()

    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["stage_state"]
    assert state["aug"]["tau"].shape == (14, 14)
    assert state["aug_optimizer"]["state"], "the policy optimizer's momentum is checkpointed"
