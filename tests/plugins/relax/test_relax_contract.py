"""Contract tests: every registered relaxation on every registered space, at tiny sizes.

A relaxation must work on any space: groups with one edge and ``keep=1`` (MobileNet
blocks), groups with several edges and ``keep=2`` (DARTS nodes), and no groups at all (a
timm backbone).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dha_core import get_registry
from dha_core.interfaces import ArchStepContext, DataSpec
from dha_core.types import MixingWeights

SPEC = DataSpec(num_classes=3, channels=3, image_size=8)

# The smallest config of every space this file knows how to shrink.
SMALL_SPACES: dict[str, dict[str, Any]] = {
    "tiny": {"channels": 4, "keep": 2},
    "darts": {"C": 4, "layers": 3, "nodes": 2},
    "mobilenet": {
        "stem_channels": 8,
        "first_block_channels": 8,
        "stage_widths": (8, 16),
        "depths": (2, 1),
        "strides": (1, 2),
        "kernel_sizes": (3, 5),
        "expand_ratios": (1, 2),
        "last_channels": 16,
    },
    "timm": {"model": "test_resnet"},
}

REGISTRY = get_registry()
RELAXES = REGISTRY.names("relax")
SPACES = REGISTRY.names("space")


def _space(name: str) -> Any:
    if name not in SMALL_SPACES:
        pytest.skip(f"no small config known for space {name!r}: add one to SMALL_SPACES to test it")
    cfg = REGISTRY.get("space", name).config(**SMALL_SPACES[name])
    return REGISTRY.create("space", cfg, data_spec=SPEC)


def _genotype_file(space: Any) -> str:
    """A genotype.json of a valid selection of ``space`` (what ``relax=fixed`` reads)."""
    import json
    import tempfile

    uniform = REGISTRY.create("relax", REGISTRY.get("relax", "uniform").config())
    uniform.setup(space.choice_groups(), space)
    # One file per space, so that two relaxations built for the same space report alike.
    path = Path(tempfile.gettempdir()) / f"dha-contract-{type(space).__name__}-genotype.json"
    path.write_text(json.dumps(space.genotype(uniform.selection()) if space.choice_groups() else {}))
    return str(path)


# Relaxations with required fields: a value that fits any space.
REQUIRED: dict[str, Any] = {"fixed": lambda space: {"genotype": _genotype_file(space)}}


def _relax(name: str, space: Any, **overrides: Any) -> Any:
    if name in REQUIRED:
        overrides = {**REQUIRED[name](space), **overrides}
    relax = REGISTRY.create("relax", REGISTRY.get("relax", name).config(**overrides))
    relax.setup(space.choice_groups(), space)
    return relax


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


def _batch(seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _ctx(net: nn.Module, relax: Any, backprop: list[Any] | None = None) -> ArchStepContext:
    """A context whose ``loss`` records, in ``backprop``, the batches a gradient flowed back through."""

    def loss(batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out = F.cross_entropy(_logits(net(batch[0], relax.mixing_weights())), batch[1])
        if backprop is not None:
            out.register_hook(lambda grad: backprop.append(batch))
        return out

    return ArchStepContext(loss=loss, weight_params=[p for p in net.parameters() if p.requires_grad],
                           weight_lr=0.05, weight_momentum=0.9, weight_decay=3e-4,
                           train_batch=_batch(0), val_batch=_batch(1))


def _step(net: nn.Module, relax: Any, ctx: ArchStepContext) -> dict[str, Any]:
    """One orchestrator-style iteration: bilevel arch step before, single-level after the backward."""
    if relax.bilevel:
        metrics = relax.arch_step(ctx)
    F.cross_entropy(_logits(net(ctx.train_batch[0], relax.mixing_weights())), ctx.train_batch[1]).backward()
    if not relax.bilevel:
        metrics = relax.arch_step(ctx)
    net.zero_grad(set_to_none=True)
    return metrics


def _trained(relax_name: str, space_name: str, steps: int) -> tuple[Any, nn.Module, Any]:
    """Space, supernet and relaxation (seed 0) after ``steps`` iterations and one epoch end."""
    torch.manual_seed(0)
    space = _space(space_name)
    net = space.build_supernet()
    relax = _relax(relax_name, space)
    ctx = _ctx(net, relax)
    for _ in range(steps):
        _step(net, relax, ctx)
    relax.on_epoch_end(0, net)
    return space, net, relax


def _some_gradient(grads: Any) -> bool:
    """Whether the loss reached the architecture.

    Not every parameter need get a gradient from one batch: a candidate whose output is
    zero (DARTS' ``none``, MobileNet's ``zero``) passes none to its weight, so a Gumbel
    sample or an ISTA support made only of such candidates leaves its group without one.
    """
    return any(g is not None and bool(g.abs().sum() > 0) for g in grads)


pytestmark = pytest.mark.parametrize("space_name", SPACES)


@pytest.mark.parametrize("relax_name", RELAXES)
def test_weights_have_group_shapes_and_declared_sparsity(relax_name: str, space_name: str) -> None:
    torch.manual_seed(0)
    space = _space(space_name)
    relax = _relax(relax_name, space)
    groups = space.choice_groups()
    w = relax.mixing_weights()
    assert set(w.values) == {g.name for g in groups}
    for g in groups:
        values = w.values[g.name]
        assert tuple(values.shape) == g.shape and torch.isfinite(values).all()
        pairs = w.active_pairs(g.name)
        if pairs is None:
            continue
        assert pairs and len(set(pairs)) == len(pairs)
        assert all(0 <= e < len(g.edges) and 0 <= o < len(g.ops) for e, o in pairs)
        off = torch.ones(g.shape, dtype=torch.bool)
        for e, o in pairs:
            off[e, o] = False
        assert torch.equal(values.detach()[off], torch.zeros(int(off.sum())))  # outside active is zero
    out = _logits(space.build_supernet()(_batch(0)[0], w))
    assert out.shape == (4, SPEC.num_classes)


@pytest.mark.parametrize("relax_name", RELAXES)
def test_arch_params_learn_from_the_loss_they_declare(relax_name: str, space_name: str) -> None:
    torch.manual_seed(0)
    space = _space(space_name)
    net = space.build_supernet()
    relax = _relax(relax_name, space)
    params = relax.arch_parameters()
    if not space.choice_groups():
        assert params == []
    backprop: list[Any] = []
    ctx = _ctx(net, relax, backprop)
    if not params:  # nothing to learn: the step must still run
        assert isinstance(_step(net, relax, ctx), dict)
        return
    before = [p.detach().clone() for p in params]
    if relax.bilevel:
        # Learns from the validation batch: its loss reaches the architecture...
        grads = torch.autograd.grad(ctx.loss(ctx.val_batch), params, allow_unused=True)
        assert _some_gradient(grads)
        backprop.clear()
        relax.arch_step(ctx)
        # ...and the arch step differentiates it (a gradient flowed back through it),
        # without touching the weights' gradients.
        assert any(b is ctx.val_batch for b in backprop)
        assert all(p.grad is None for p in net.parameters())
        moved = [p.detach().clone() for p in relax.arch_parameters()]
    else:
        # Learns from the training backward, through the weights it produced.
        x, y = ctx.train_batch
        F.cross_entropy(_logits(net(x, relax.mixing_weights())), y).backward()
        assert _some_gradient([p.grad for p in params])
        relax.arch_step(ctx)
        moved = [p.detach().clone() for p in params]
    assert any(not torch.equal(a, b) for a, b in zip(moved, before))


@pytest.mark.parametrize("relax_name", RELAXES)
def test_selection_is_valid_and_derives_the_supernet(relax_name: str, space_name: str) -> None:
    space, net, relax = _trained(relax_name, space_name, steps=1)
    selection = relax.selection()
    groups = space.choice_groups()
    assert set(selection) == {g.name for g in groups}
    for g in groups:
        picked = selection[g.name]
        assert 1 <= len(picked) <= g.keep
        assert len({(s.edge, s.op) for s in picked}) == len(picked)
        for s in picked:
            assert 0 <= s.edge < len(g.edges) and 0 <= s.op < len(g.ops)
            assert g.ops[s.op] != g.none_op
            assert torch.isfinite(torch.tensor(s.weight))
    x = _batch(3)[0]
    child = space.build_child(selection).eval()
    assert _logits(child(x)).shape == (4, SPEC.num_classes)
    # The derived child computes the supernet restricted to the selection, with its weights.
    net.eval()
    values = {g.name: torch.zeros(g.shape) for g in groups}
    for name, picked in selection.items():
        for s in picked:
            values[name][s.edge, s.op] = s.weight
    active = {name: [(s.edge, s.op) for s in picked] for name, picked in selection.items()}
    with torch.no_grad():
        expected = net(x, MixingWeights(values, active))
        derived = space.derive(net, selection).eval()(x)
    assert torch.allclose(derived, expected, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("relax_name", RELAXES)
def test_state_dict_round_trips(relax_name: str, space_name: str) -> None:
    space, _, relax = _trained(relax_name, space_name, steps=2)
    buf = io.BytesIO()
    torch.save(relax.state_dict(), buf)
    buf.seek(0)
    fields = REGISTRY.get("relax", relax_name).config.model_fields
    fresh = _relax(relax_name, space, **({"seed": 1234} if "seed" in fields else {}))
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    a, b = relax.state_dict(), fresh.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key
    relax.eval()
    fresh.eval()
    assert fresh.selection() == relax.selection()
    wa, wb = relax.mixing_weights(), fresh.mixing_weights()
    assert wa.active == wb.active
    assert all(torch.equal(wa.values[k], wb.values[k]) for k in wa.values)
    assert fresh.report() == relax.report()
