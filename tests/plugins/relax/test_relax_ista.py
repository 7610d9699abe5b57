"""relax=ista: sparse weights, the gradient of b, recovery, freezing, folding, limits."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dha_core import get_registry
from dha_core.errors import UserInputError
from dha_core.interfaces import ArchStepContext, DataSpec
from dha_core.types import ChoiceGroup, Selection
from dha_plugins.relax.fista import fista
from dha_plugins.relax.ista import IstaConfig, IstaRelaxation
from dha_plugins.relax.sparse_code import sparse_code_weights
from dha_plugins.spaces.tiny import TinySupernet

SPEC = DataSpec(num_classes=3, channels=3, image_size=4)


def _tiny(**cfg: Any) -> Any:
    reg = get_registry()
    cfg = {"channels": 2, "keep": 2, **cfg}
    return reg.create("space", reg.get("space", "tiny").config(**cfg), data_spec=SPEC)


# The mechanics below are tested without the search schedule: recovery at epoch ends only,
# no probes, constant step size, no op caps (each has its own tests).
MECHANICS = {"recover_every": None, "probes": 0, "lr_decay": "none", "init_std": 1.0, "lr": 3e-4, "op_caps": {}}


def _ista(space: Any, **cfg: Any) -> IstaRelaxation:
    relax = IstaRelaxation(IstaConfig(**{**MECHANICS, **cfg}))
    relax.setup(space.choice_groups(), space)
    return relax


def _batch(seed: int = 0, n: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 4, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _ctx(**kw: Any) -> ArchStepContext:
    return ArchStepContext(loss=lambda b: torch.zeros(()), weight_params=[], weight_lr=0.1, **kw)


def _train_step(net: nn.Module, relax: IstaRelaxation, seed: int = 0) -> None:
    x, y = _batch(seed)
    F.cross_entropy(net(x, relax.mixing_weights()), y).backward()
    relax.arch_step(_ctx())


# ------------------------------------------------------------------ weights
def test_weights_live_on_the_support_only() -> None:
    relax = _ista(_tiny(), init_std=0.5)
    w = relax.mixing_weights()
    for node in relax.nodes:
        g = node.group
        values = w.values[g.name]
        assert values.shape == g.shape
        pairs = w.active[g.name]
        assert len(pairs) == g.keep == node.sparsity
        mask = torch.zeros(g.shape, dtype=torch.bool)
        for e, o in pairs:
            mask[e, o] = True
            assert g.ops[o] != g.none_op  # "none" never enters the support
        assert torch.equal(values[~mask], torch.zeros(int((~mask).sum())))
        expected = sparse_code_weights(node.A, node.b, node.x, node.support)
        assert torch.allclose(values[mask], expected)  # row-major mask order == sorted support


def test_initial_support_is_the_top_of_the_recovered_code() -> None:
    relax = _ista(_tiny(), init_std=0.5, lam=1e-3)
    for node in relax.nodes:
        x = fista(node.A, node.b.detach(), 1e-3).x
        assert torch.allclose(node.x, x, atol=1e-6)
        allowed = [i for i in range(x.numel()) if i % len(node.group.ops) != 0]
        best = sorted(sorted(allowed, key=lambda i: -abs(float(x[i])))[: node.sparsity])
        assert node._support == best


def test_sparsity_config() -> None:
    space = _tiny(channels=2, keep=1)
    assert [n.sparsity for n in _ista(space).nodes] == [1, 1]  # default: the group's keep
    relax = _ista(space, sparsity=3)
    assert [len(relax.mixing_weights().active[g.name]) for g in space.choice_groups()] == [3, 3]
    sel = relax.selection()
    for node in relax.nodes:  # keep=1: the largest |x| of the support
        (chosen,) = sel[node.group.name]
        i = chosen.edge * len(node.group.ops) + chosen.op
        assert abs(float(node.x[i])) == max(abs(float(node.x[j])) for j in node._support)
    with pytest.raises(UserInputError, match="sparsity=1"):
        _ista(_tiny(keep=2), sparsity=1)


@pytest.mark.parametrize("distinct", [False, True])
def test_distinct_edges_reaches_the_support(distinct: bool) -> None:
    """``distinct_edges`` keeps at most one op per edge in every node's support (initial and
    after recovery); without it, some seed puts two ops of one edge in a support."""
    space = _tiny(channels=2, keep=2)
    shared_edge_seen = False
    for seed in range(8):
        relax = _ista(space, init_std=1.0, lam=1e-4, distinct_edges=distinct, seed=seed)
        relax.recover(epoch=0)
        for node in relax.nodes:
            edges = [i // len(node.group.ops) for i in node._support]
            shared_edge_seen |= len(set(edges)) < len(edges)
            if distinct:
                assert len(set(edges)) == len(edges), (seed, node.group.name, node._support)
    assert shared_edge_seen != distinct


def test_selection_carries_the_current_weights() -> None:
    relax = _ista(_tiny(), init_std=0.5)
    w = relax.mixing_weights()
    keep = {g.name: g.keep for g in relax.groups}
    for name, ops in relax.selection().items():
        assert len(ops) == keep[name]
        for s in ops:
            assert s.weight == pytest.approx(float(w.values[name][s.edge, s.op].detach()))


# ------------------------------------------------------------------ gradient
def test_gradient_of_b_through_the_supernet_matches_finite_differences() -> None:
    torch.manual_seed(0)
    space = _tiny()
    net = space.build_supernet().double()
    relax = _ista(space, init_std=0.5).double()
    x, y = _batch(1)
    x = x.double()

    def loss() -> torch.Tensor:
        return F.cross_entropy(net(x, relax.mixing_weights()), y)

    loss().backward()
    h = 1e-6
    for node in relax.nodes:
        grad = node.b.grad.clone()
        assert grad.abs().max() > 0
        fd = torch.zeros_like(grad)
        with torch.no_grad():
            for i in range(grad.numel()):
                node.b[i] += h
                up = loss()
                node.b[i] -= 2 * h
                down = loss()
                node.b[i] += h
                fd[i] = (up - down) / (2 * h)
        assert torch.allclose(grad, fd, rtol=1e-5, atol=1e-9)


def test_arch_step_is_adam_on_the_training_gradient() -> None:
    space = _tiny()
    net = space.build_supernet()
    relax = _ista(space, lr=0.01, weight_decay=1e-3, init_std=0.5)
    ref = [nn.Parameter(n.b.detach().clone()) for n in relax.nodes]
    opt = torch.optim.Adam(ref, lr=0.01, betas=(0.5, 0.999), weight_decay=1e-3)
    for step in range(3):
        x, y = _batch(step)
        F.cross_entropy(net(x, relax.mixing_weights()), y).backward()
        for p, node in zip(ref, relax.nodes):
            p.grad = node.b.grad.clone()
        opt.step()
        relax.arch_step(_ctx())
        assert all(n.b.grad is None for n in relax.nodes)
    for p, node in zip(ref, relax.nodes):
        assert torch.allclose(node.b, p, atol=1e-6)


# ------------------------------------------------------------------ recovery and freezing
def test_recovery_updates_support_and_freezes_converged_nodes() -> None:
    space = _tiny()
    relax = _ista(space, init_std=0.5, freeze_tol=1e-6, lam=1e-3)
    node0, node1 = relax.nodes
    with torch.no_grad():  # move only node1's code: node0's x cannot change
        node1.b.add_(torch.randn(node1.b.shape, generator=torch.Generator().manual_seed(1)))
    events = relax.on_epoch_end(0)
    assert events["ista/rejected"] == 0 and events["ista/newly_frozen"] == ["cell/node0"]
    assert node0._frozen and not node1._frozen
    assert torch.allclose(node1.x, fista(node1.A, node1.b.detach(), 1e-3).x, atol=1e-6)
    report = relax.report()
    assert report["frozen_at"] == {"cell/node0": {"epoch": 0, "step": 0}, "cell/node1": None}
    assert report["recoveries"] == 1 and not report["all_frozen"]

    # A frozen node's b stops and its weights stay fixed; it leaves arch_parameters().
    assert not node0.b.requires_grad and all(p is not node0.b for p in relax.arch_parameters())
    b0, w0 = node0.b.detach().clone(), relax.mixing_weights().values["cell/node0"].detach().clone()
    net = space.build_supernet()
    _train_step(net, relax)
    assert torch.equal(node0.b, b0)
    assert torch.equal(relax.mixing_weights().values["cell/node0"], w0)
    assert not relax.should_stop()  # early_stop is off by default


def test_freezing_warmup_none_and_early_stop() -> None:
    space = _tiny()
    relax = _ista(space, freeze_tol=10.0, freeze_warmup=1, early_stop=True)
    assert relax.on_epoch_end(0)["ista/frozen"] == 0  # warm-up recovery
    assert relax.on_epoch_end(1)["ista/frozen"] == 2
    assert relax.should_stop() and relax.report()["all_frozen"]
    assert {v["epoch"] for v in relax.report()["frozen_at"].values()} == {1}
    never = _ista(space, freeze_tol=None, early_stop=True)
    for epoch in range(3):
        never.on_epoch_end(epoch)
    assert not any(n._frozen for n in never.nodes) and not never.should_stop()


def test_recover_every_k_steps_and_fold_through_context() -> None:
    space = _tiny()
    net = space.build_supernet()
    calls: list[str] = []
    net.fold_group = lambda group, weights: calls.append(group) or True  # type: ignore[method-assign]
    relax = _ista(space, recover_every=2, freeze_tol=10.0, init_std=0.5)
    for step in range(3):
        x, y = _batch(step)
        F.cross_entropy(net(x, relax.mixing_weights()), y).backward()
        metrics = relax.arch_step(_ctx(supernet=net))
        assert ("ista/rejected" in metrics) == (step == 1)
    assert relax.report()["recoveries"] == 1
    assert relax.report()["frozen_at"]["cell/node1"] == {"epoch": 0, "step": 2}
    assert calls == ["cell/node0", "cell/node1"]
    # Per-epoch recovery is off with recover_every; on_epoch_end does not recover again.
    relax.on_epoch_end(0, net)
    assert relax.report()["recoveries"] == 1


# ------------------------------------------------------------------ folding
class _FoldingTinySupernet(TinySupernet):
    """The tiny supernet plus a ``fold_group`` that scales the trailing BN of conv candidates."""

    def fold_group(self, group: str, weights: torch.Tensor) -> bool:
        ops = self.candidates[group.replace("/", "_")]
        pairs = [(int(e), int(o)) for e, o in torch.nonzero(weights)]
        mods = [ops[f"e{e}_o{o}"] for e, o in pairs]
        if not all(isinstance(m, nn.Sequential) and isinstance(m[-1], nn.BatchNorm2d) for m in mods):
            return False
        with torch.no_grad():
            for (e, o), m in zip(pairs, mods):
                m[-1].weight.mul_(weights[e, o])
                m[-1].bias.mul_(weights[e, o])
        return True


def _darts_space() -> Any:
    reg = get_registry()
    cfg = reg.get("space", "darts").config(C=4, layers=3, nodes=2)
    return reg.create("space", cfg, data_spec=DataSpec(num_classes=3, channels=3, image_size=8))


def _spaces(kind: str) -> tuple[Any, nn.Module]:
    if kind == "tiny":  # no fold_group: the frozen weights stay in the mixing
        space = _tiny()
        return space, space.build_supernet()
    if kind == "tiny-folding":  # conv-only candidates, so every support can fold
        space = _tiny(ops=("none", "conv_3x3"))
        return space, _FoldingTinySupernet(space)
    space = _darts_space()
    return space, space.build_supernet()


@pytest.mark.parametrize("kind", ["tiny", "tiny-folding", "darts"])
def test_frozen_and_folded_child_matches_the_supernet(kind: str) -> None:
    torch.manual_seed(0)
    space, net = _spaces(kind)
    relax = _ista(space, freeze_tol=1e-4, freeze_warmup=1, init_std=0.5, lam=1e-3, lr=0.05)
    size = space.data_spec.image_size
    x = torch.randn(4, 3, size, size)
    net.train()
    for step in range(2):  # move b and the BN statistics away from their initial values
        xb = torch.randn(4, 3, size, size)
        out = net(xb, relax.mixing_weights())
        out = out[0] if isinstance(out, tuple) else out
        F.cross_entropy(out, torch.randint(0, 3, (4,))).backward()
        relax.arch_step(_ctx())
        net.zero_grad()
    relax.on_epoch_end(0, net)  # warm-up recovery: new support, no freezing
    net.eval()
    with torch.no_grad():
        reference = net(x, relax.mixing_weights())
    events = relax.on_epoch_end(1, net)  # b did not move: every node freezes
    assert events["ista/frozen"] == len(relax.nodes)
    folded = relax.report()["folded"]
    if kind == "tiny":
        assert folded == []
    if kind == "tiny-folding":
        assert folded == ["cell/node0", "cell/node1"]
    weights = relax.mixing_weights()
    for node in relax.nodes:
        if node._folded:  # folded: unit weights in the mixing and in the selection
            vals = [float(weights.values[node.group.name][e, o]) for e, o in weights.active[node.group.name]]
            assert vals == [1.0] * node.sparsity
            assert all(s.weight == 1.0 for s in relax.selection()[node.group.name])
    with torch.no_grad():
        after = net(x, weights)
        child = space.derive(net, relax.selection()).eval()
        out = child(x)
    assert torch.allclose(after, reference, atol=1e-5, rtol=0)
    assert torch.allclose(out, reference, atol=1e-5, rtol=0)


def test_fold_is_skipped_when_disabled() -> None:
    space = _tiny()
    net = space.build_supernet()
    net.fold_group = lambda group, weights: pytest.fail("fold=false must not fold")  # type: ignore[method-assign]
    relax = _ista(space, freeze_tol=10.0, fold=False)
    relax.on_epoch_end(0, net)
    assert relax.report()["folded"] == [] and all(n._frozen for n in relax.nodes)


# ------------------------------------------------------------------ resource limits
class _LimitedSpace:
    """Delegates to the tiny space; the cost is 100 for the initial selection, 500 otherwise."""

    def __init__(self, space: Any) -> None:
        self.space = space
        self.initial: Selection | None = None
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)

    def selection_cost(self, selection: Selection, metric: str = "params") -> float:
        self.calls.append(metric)
        pairs = {g: [(s.edge, s.op) for s in ops] for g, ops in selection.items()}
        return 100.0 if pairs == self.initial else 500.0


def _encode_new_support(relax: IstaRelaxation) -> None:
    """Sets every b to the code of a sparse x supported away from the current support."""
    with torch.no_grad():
        for node in relax.nodes:
            ops = len(node.group.ops)
            fresh = [i for i in range(node.x.numel()) if i % ops != 0 and i not in node._support]
            target = fresh[: node.sparsity]
            node.b.copy_(node.A[:, target] @ torch.full((len(target),), 5.0))


def test_over_limit_recovery_is_rejected_and_previous_selection_kept(caplog: pytest.LogCaptureFixture) -> None:
    limited = _LimitedSpace(_tiny())
    relax = _ista(limited, init_std=0.1, max_flops=200.0, freeze_tol=10.0)
    limited.initial = {g: [(s.edge, s.op) for s in ops] for g, ops in relax.selection().items()}
    state = {k: v.clone() for k, v in relax.state_dict().items() if k.endswith((".x", ".support"))}
    _encode_new_support(relax)
    with caplog.at_level(logging.WARNING, logger="dha_plugins.relax.ista"):
        events = relax.on_epoch_end(0)
    assert events["ista/rejected"] == 1 and "rejected" in caplog.text
    assert limited.calls == ["flops"]
    after = relax.state_dict()
    assert all(torch.equal(after[k], v) for k, v in state.items())  # previous x and support kept
    assert not any(n._frozen for n in relax.nodes)  # and nothing froze on a rejected recovery
    (rej,) = relax.report()["rejections"]
    assert rej == {"metric": "flops", "cost": 500.0, "limit": 200.0, "epoch": 0, "step": 0}

    relax.config.max_flops = 1000.0  # under the limit: accepted
    assert relax.on_epoch_end(1)["ista/rejected"] == 0
    assert relax.selection() != {}
    assert {g: [(s.edge, s.op) for s in ops] for g, ops in relax.selection().items()} != limited.initial


def test_params_limit_uses_the_real_space_cost() -> None:
    space = _tiny(channels=4)
    relax = _ista(space, init_std=0.5, max_params=1.0)  # below any child's size
    assert relax.on_epoch_end(0)["ista/rejected"] == 1
    assert relax.report()["rejections"][0]["cost"] == space.selection_cost(relax.selection(), "params")


# ------------------------------------------------------------------ cost penalty
class _CostSpace:
    """Delegates to the tiny space; candidate costs from a table (op 1 cheap, the rest dear)."""

    def __init__(self, space: Any, cheap_op: int = 1) -> None:
        self.space = space
        self.cheap_op = cheap_op
        self.metrics: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.space, name)

    def candidate_costs(self, metric: str = "params") -> dict[str, torch.Tensor]:
        self.metrics.append(metric)
        out = {}
        for g in self.space.choice_groups():
            cost = torch.full(g.shape, 4.0, dtype=torch.float64)
            cost[:, self.cheap_op] = 1.0
            out[g.name] = cost
        return out


def test_costs_are_relative_to_the_dearest_candidate_and_carried_by_the_state() -> None:
    space = _CostSpace(_tiny())
    relax = _ista(space, cost_weight=0.1, cost_metric="flops")
    assert space.metrics == ["flops"]
    ops = len(relax.nodes[0].group.ops)
    for node in relax.nodes:
        cost = node.cost.view(-1, ops)
        assert torch.all(cost[:, 1] == 0.25) and float(node.cost[node.eligible].max()) == 1.0
    assert any(k.endswith(".cost") for k in relax.state_dict())
    assert 0.25 <= relax.support_cost() <= 1.0 and relax.report()["support_cost"] == relax.support_cost()


def test_cost_penalty_gradient_matches_finite_differences() -> None:
    space = _CostSpace(_tiny())
    relax = _ista(space, cost_weight=0.3)
    relax.double()
    node = relax.nodes[0]

    def penalty(b: torch.Tensor) -> torch.Tensor:  # the documented formula, written out independently
        idx = torch.tensor(node.eligible)
        a, x, cost = node.A[:, idx], node.x[idx], node.cost[idx]
        alpha = a.T @ b - (a.T @ a - torch.eye(len(idx), dtype=b.dtype)) @ x
        magnitude = (alpha**2 + 1e-8).sqrt()
        return 0.3 * (cost * magnitude).sum() / magnitude.sum()

    for n in relax.nodes:
        n.b.grad = None
    relax._add_cost_gradient()
    b0, eps = node.b.detach().clone(), 1e-6
    fd = torch.stack([(penalty(b0 + eps * e) - penalty(b0 - eps * e)) / (2 * eps)
                      for e in torch.eye(b0.numel(), dtype=b0.dtype)])
    torch.testing.assert_close(node.b.grad, fd, rtol=1e-5, atol=1e-8)


def test_cost_penalty_moves_the_support_to_cheap_ops() -> None:
    """With no training signal, the penalty alone swaps dear candidates for the cheap one
    (across seeds); cost-blind (weight 0) leaves every support where it started."""
    def run(weight: float, seed: int) -> tuple[float, float]:
        relax = _ista(_CostSpace(_tiny(channels=2)), cost_weight=weight, init_std=0.5, lr=0.05, recover_every=5,
                      freeze_tol=None, seed=seed)
        relax._set_costs(_CostSpace(_tiny(channels=2)))  # the same table scores the cost-blind run
        start = relax.support_cost()
        for _ in range(400):
            relax.arch_step(_ctx())
        return start, relax.support_cost()

    aware = [run(0.1, seed) for seed in range(5)]
    assert all(end <= 0.5 for _, end in aware)  # at most half the picks dear (all dear cost 1.0)
    assert sum(end == 0.25 for _, end in aware) >= 3  # every pick cheap in most seeds
    assert sum(start > 0.5 for start, _ in aware) >= 3  # the random start was dear
    assert all(start == end for start, end in (run(0.0, seed) for seed in range(5)))


def test_cost_weight_default_follows_the_budget() -> None:
    """null: the penalty is on for a time-budgeted search (epochs None) and off otherwise;
    a space without costs then searches cost-blind instead of failing."""
    space = _CostSpace(_tiny())
    budgeted = IstaRelaxation(IstaConfig(**MECHANICS), epochs=None)
    budgeted.setup(space.choice_groups(), space)
    assert budgeted.cost_weight == 0.1 and space.metrics == ["latency"]
    assert budgeted.report()["cost_weight"] == 0.1
    counted = IstaRelaxation(IstaConfig(**MECHANICS), epochs=5)
    counted.setup(space.choice_groups(), space)
    assert counted.cost_weight == 0.0 and "ista/cost_penalty" not in counted.arch_step(_ctx())
    explicit = IstaRelaxation(IstaConfig(**MECHANICS, cost_weight=0.0), epochs=None)
    assert explicit.cost_weight == 0.0
    plain = IstaRelaxation(IstaConfig(**MECHANICS), epochs=None)
    plain.setup(_tiny().choice_groups(), _tiny())  # the tiny space gives no costs
    assert plain.cost_weight == 0.0 and "ista/cost_penalty" not in plain.arch_step(_ctx())


def test_cost_weight_needs_the_space_to_give_costs() -> None:
    with pytest.raises(UserInputError, match="relax.cost_weight"):
        _ista(_tiny(), cost_weight=0.1)  # the tiny space gives no candidate costs


# ------------------------------------------------------------------ state
def test_state_dict_round_trip_with_frozen_and_folded_nodes() -> None:
    space = _tiny()
    net = space.build_supernet()
    net.fold_group = lambda group, weights: group == "cell/node0"  # type: ignore[method-assign]
    relax = _ista(space, freeze_tol=10.0, max_params=1.0, init_std=0.5)
    _train_step(net, relax)
    relax.on_epoch_end(0, net)  # rejected (limit)
    relax.config.max_params = None
    relax.on_epoch_end(1, net)  # accepted: both freeze, node0 folds
    buf = io.BytesIO()
    torch.save(relax.state_dict(), buf)
    buf.seek(0)
    fresh = _ista(space, freeze_tol=10.0, seed=123)  # another seed: A must come from the state
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.selection() == relax.selection()
    for name, value in relax.mixing_weights().values.items():
        assert torch.equal(fresh.mixing_weights().values[name], value)
    assert fresh.mixing_weights().active == relax.mixing_weights().active
    assert fresh.report() == relax.report()
    assert [n.b.requires_grad for n in fresh.nodes] == [False, False]
    assert [n._folded for n in fresh.nodes] == [True, False]


def test_zero_groups() -> None:
    relax = IstaRelaxation(IstaConfig(**{**MECHANICS, "early_stop": True}))
    relax.setup([])
    assert relax.mixing_weights().values == {} and relax.selection() == {}
    assert relax.arch_step(_ctx())["ista/frozen"] == 0
    assert relax.on_epoch_end(0)["ista/rejected"] == 0
    assert not relax.should_stop() and relax.arch_parameters() == []


def test_group_with_a_single_edge_and_keep_one() -> None:
    group = ChoiceGroup("stage1/block0", ("in",), ("k3e3", "k5e6", "k7e6", "zero"), keep=1, none_op=None)
    relax = IstaRelaxation(IstaConfig(**{**MECHANICS, "init_std": 0.5}))
    relax.setup([group])
    (pair,) = relax.mixing_weights().active[group.name]
    assert pair[0] == 0 and len(relax.selection()[group.name]) == 1


# ----------------------------------------------------------------------------- search schedule
def test_probes_do_not_change_the_output_and_send_their_gradient_to_b() -> None:
    """A probed candidate has weight value 0 and the sparse-code gradient ``a_k`` in ``b``:
    the first-order effect of adding it, checked against a finite difference of the dense code."""
    space = _tiny(keep=1)
    relax = _ista(space, probes=1)
    relax.train()
    node = relax.nodes[1]
    weights = relax.mixing_weights()
    name = node.group.name
    plain = node.dense()
    assert torch.equal(weights.values[name].detach(), plain.detach())
    probes = [i for i in weights.active[name] if i not in node.active_pairs()]
    assert len(probes) == 1
    edge, op = probes[0]
    k = edge * len(node.group.ops) + op
    assert k not in node._support
    # d(weight_k)/db = a_k: the gradient of a linear read-out of the probe's weight.
    (weights.values[name][edge, op] * 3.0).backward()
    assert torch.allclose(node.b.grad, 3.0 * node.A[:, k])
    relax.eval()
    assert relax.mixing_weights().active[name] == node.active_pairs()  # no probes outside training


def test_probes_are_a_function_of_the_step_count() -> None:
    space = _tiny(keep=1)
    a, b = _ista(space, probes=2), _ista(space, probes=2)
    assert a.mixing_weights().active == b.mixing_weights().active
    a._steps = 5
    draws = {str(a.mixing_weights().active)}
    for step in range(6, 12):
        a._steps = step
        draws.add(str(a.mixing_weights().active))
    assert len(draws) > 1


def test_probes_default_follows_the_budget() -> None:
    """null: one probe per node for a search bounded by epochs, none under a time budget
    alone (docs/relaxations.md, "Probes"); an explicit count wins either way."""
    space = _tiny(keep=1)
    auto = {k: v for k, v in MECHANICS.items() if k != "probes"}

    def probed(relax: IstaRelaxation) -> int:
        relax.setup(space.choice_groups(), space)
        relax.train()
        weights = relax.mixing_weights()
        return sum(len(weights.active[n.group.name]) - len(n.active_pairs()) for n in relax.nodes)

    counted = IstaRelaxation(IstaConfig(**auto), epochs=5)
    assert counted.probes == 1 and probed(counted) == len(counted.nodes)
    assert counted.report()["probes"] == 1
    budgeted = IstaRelaxation(IstaConfig(**auto), epochs=None)
    assert budgeted.probes == 0 and probed(budgeted) == 0
    assert budgeted.report()["probes"] == 0
    assert IstaRelaxation(IstaConfig(**auto, probes=2), epochs=None).probes == 2
    assert IstaRelaxation(IstaConfig(**auto, probes=0), epochs=5).probes == 0


def test_seed_follows_the_run_seed_unless_set() -> None:
    from dha_plugins.relax.ista import create_ista

    space = _tiny()

    def matrix(config: IstaConfig, seed: int) -> torch.Tensor:
        relax = create_ista(config, seed=seed)
        relax.setup(space.choice_groups(), space)
        return relax.nodes[0].A

    assert not torch.equal(matrix(IstaConfig(), 3), matrix(IstaConfig(), 4))
    assert torch.equal(matrix(IstaConfig(seed=7), 3), matrix(IstaConfig(seed=7), 4))


def test_finalize_freezes_every_node_and_stops_learning() -> None:
    space = _tiny()
    relax = _ista(space)
    before = relax.selection()
    events = relax.finalize(None)
    assert events["ista/finalized"] == len(relax.nodes) and events["ista/frozen"] == len(relax.nodes)
    assert relax.arch_parameters() == []
    assert relax.selection() == before
    assert relax.finalize(None) == {}  # once


def test_cosine_step_size_reaches_zero_at_the_end_of_the_search() -> None:
    space = _tiny()
    relax = _ista(space, lr=0.1, lr_decay="cosine")
    relax.on_progress(1.0)
    before = [n.b.detach().clone() for n in relax.nodes]
    for n in relax.nodes:
        n.b.grad = torch.ones_like(n.b)
    relax.arch_step(_ctx())
    assert all(torch.allclose(n.b, b0, atol=1e-9) for n, b0 in zip(relax.nodes, before, strict=True))
    relax.on_progress(0.0)
    for n in relax.nodes:
        n.b.grad = torch.ones_like(n.b)
    relax.arch_step(_ctx())
    assert not torch.allclose(relax.nodes[0].b, before[0])


def _with_codes(relax: IstaRelaxation, monkeypatch: pytest.MonkeyPatch, codes: dict[str, list[float]]) -> None:
    """Makes recovery return ``codes`` instead of solving the LASSO."""
    monkeypatch.setattr(relax, "_solve", lambda nodes: [torch.tensor(codes[n.group.name]) for n in nodes])


# Tiny cell: node0 has one edge, node1 two; ops (none, skip_connect, conv_3x3, avg_pool_3x3).
# skip_connect has the largest |x| everywhere: node0 picks it, node1's top two are both skips.
SKIP_HEAVY = {"cell/node0": [0.0, 0.9, 0.5, 0.1], "cell/node1": [0.0, 0.8, 0.3, 0.0, 0.0, 0.7, 0.2, 0.6]}


@pytest.mark.parametrize(("cap", "node0", "node1"), [(None, [1], [1, 5]), (2, [1], [1, 7]), (1, [1], [2, 7]),
                                                      (0, [2], [2, 7])])
def test_op_caps_drop_the_weakest_capped_entries_of_a_cell(
    monkeypatch: pytest.MonkeyPatch, cap: int | None, node0: list[int], node1: list[int]
) -> None:
    relax = _ista(_tiny(), op_caps={} if cap is None else {"skip_connect": cap})
    _with_codes(relax, monkeypatch, SKIP_HEAVY)
    relax.recover()
    assert [n._support for n in relax.nodes] == [node0, node1]
    skips = sum(s.op == 1 for pairs in relax.selection().values() for s in pairs)
    assert skips == (3 if cap is None else min(cap, 3))


def test_op_caps_hold_together_when_an_eviction_brings_in_another_capped_op(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Skips are capped first (1 held: fine); evicting both avg pools then brings a skip into
    # node0, which the skip cap must evict again.
    relax = _ista(_tiny(), op_caps={"skip_connect": 1, "avg_pool_3x3": 0})
    _with_codes(relax, monkeypatch, {"cell/node0": [0.0, 0.2, 0.1, 0.9],
                                     "cell/node1": [0.0, 0.8, 0.3, 0.0, 0.0, 0.05, 0.2, 0.6]})
    relax.recover()
    assert [n._support for n in relax.nodes] == [[2], [1, 2]]
    ops = [s.op for pairs in relax.selection().values() for s in pairs]
    assert ops.count(1) == 1 and ops.count(3) == 0


def test_op_caps_count_frozen_nodes_without_changing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    relax = _ista(_tiny(), op_caps={"skip_connect": 1})
    node0, node1 = relax.nodes
    node0.set_code(torch.tensor(SKIP_HEAVY["cell/node0"]), [1])
    node0.freeze(0, 0)
    _with_codes(relax, monkeypatch, SKIP_HEAVY)
    relax.recover()
    assert node0._support == [1] and node1._support == [2, 7]  # node0's frozen skip uses the cap up


def test_op_caps_keep_an_op_no_other_candidate_can_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    relax = _ista(_tiny(ops=("none", "skip_connect")), op_caps={"skip_connect": 0})
    _with_codes(relax, monkeypatch, {"cell/node0": [0.0, 0.4], "cell/node1": [0.0, 0.3, 0.0, 0.2]})
    relax.recover()
    assert [n._support for n in relax.nodes] == [[1], [1, 3]]  # only skips are eligible: kept, no loop


def test_op_caps_apply_per_cell_and_to_the_initial_support(monkeypatch: pytest.MonkeyPatch) -> None:
    ops = ("none", "skip_connect", "conv")
    groups = [ChoiceGroup(f"{cell}/node{k}", (f"{cell}/node{k}/in",), ops, keep=1, none_op="none")
              for cell in ("normal", "reduce") for k in range(3)]
    codes = {g.name: [0.0, 0.5 + 0.1 * k, 0.2] for k, g in enumerate(groups)}
    monkeypatch.setattr(IstaRelaxation, "_solve",
                        lambda self, nodes: [torch.tensor(codes[n.group.name]) for n in nodes])
    relax = IstaRelaxation(IstaConfig(**{**MECHANICS, "op_caps": {"skip_connect": 1, "not_an_op": 0}}))
    relax.setup(groups)
    picks = {n.group.name: n._support for n in relax.nodes}
    # Each cell keeps its strongest skip (node2); the other nodes fall back to conv.
    assert picks == {"normal/node0": [2], "normal/node1": [2], "normal/node2": [1],
                     "reduce/node0": [2], "reduce/node1": [2], "reduce/node2": [1]}


def test_op_caps_are_off_by_default_and_validated() -> None:
    assert IstaConfig().op_caps == {}
    with pytest.raises(ValueError, match="op_caps"):
        IstaConfig(op_caps={"skip_connect": -1})
