"""relax=uniform: fixed 1/num_ops weights on every edge, a fixed selection, nothing learned."""

from __future__ import annotations

import torch

from dha_core.types import ChoiceGroup
from dha_plugins.relax.uniform import UniformConfig, UniformRelaxation

GROUPS = [
    ChoiceGroup("a", ("a/in0",), ("none", "conv", "pool"), keep=1, none_op="none"),
    ChoiceGroup("b", ("b/in0", "b/in1", "b/in2"), ("skip", "conv"), keep=2, none_op=None),
]


def test_weights_are_one_over_the_number_of_ops_and_dense() -> None:
    relax = UniformRelaxation(UniformConfig())
    relax.setup(GROUPS)
    weights = relax.mixing_weights()
    torch.testing.assert_close(weights.values["a"], torch.full((1, 3), 1 / 3))
    torch.testing.assert_close(weights.values["b"], torch.full((3, 2), 1 / 2))
    assert weights.active == {"a": None, "b": None}  # dense: every candidate computed
    assert relax.arch_parameters() == [] and relax.arch_step(None) == {}  # type: ignore[arg-type]


def test_selection_keeps_the_first_edges_with_their_first_real_op() -> None:
    relax = UniformRelaxation(UniformConfig())
    relax.setup(GROUPS)
    selection = relax.selection()
    assert [(s.edge, s.op) for s in selection["a"]] == [(0, 1)]  # op 0 is the none op
    assert [(s.edge, s.op) for s in selection["b"]] == [(0, 0), (1, 0)]
