"""relax=gumbel: hard one-hot samples, straight-through gradients, temperature schedule."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F

from dha_core import get_registry
from dha_core.interfaces import ArchStepContext, DataSpec
from dha_core.types import ChoiceGroup
from dha_plugins.relax.gumbel import GumbelConfig, GumbelRelaxation, create_gumbel, gumbel_temperature

GROUPS = [
    ChoiceGroup("node", ("e0", "e1", "e2"), ("none", "a", "b", "c"), keep=2, none_op="none"),
    ChoiceGroup("block", ("e0",), ("k3", "k5"), keep=1),
]


def _relax(**kw: Any) -> GumbelRelaxation:
    relax = GumbelRelaxation(GumbelConfig(init_std=1.0, **kw))
    relax.setup(GROUPS)
    return relax


def test_sample_is_exactly_one_hot_and_only_the_sampled_pair_is_active() -> None:
    torch.manual_seed(0)
    relax = _relax()
    w = relax.mixing_weights()
    for g in GROUPS:
        v = w.values[g.name]
        assert v.shape == g.shape
        assert torch.equal(v.detach().sum(dim=1), torch.ones(len(g.edges)))
        assert torch.equal((v.detach() != 0).sum(dim=1), torch.ones(len(g.edges), dtype=torch.long))
        pairs = w.active[g.name]
        assert [e for e, _ in pairs] == list(range(len(g.edges)))
        for e, o in pairs:
            assert v[e, o].item() == 1.0


def test_straight_through_gradient_is_the_relaxed_samples() -> None:
    relax = _relax(tau_max=2.0)
    alpha = relax.alphas[0]
    coef = torch.randn(GROUPS[0].shape)
    torch.manual_seed(1)
    w = relax.mixing_weights().values["node"]
    (grad,) = torch.autograd.grad((w * coef).sum(), alpha)
    # Replay the same noise to build the relaxed sample h = softmax((alpha + g) / tau).
    torch.manual_seed(1)
    u = torch.rand_like(alpha).clamp_(min=torch.finfo(alpha.dtype).tiny, max=1.0 - 1e-7)
    soft = torch.softmax((alpha - torch.log(-torch.log(u))) / 2.0, dim=-1)
    (expected,) = torch.autograd.grad((soft * coef).sum(), alpha)
    assert torch.allclose(grad, expected, atol=1e-7)
    assert (grad != 0).all()  # every logit of every edge learns, not only the sampled one


def test_samples_follow_the_softmax_distribution() -> None:
    relax = GumbelRelaxation(GumbelConfig())
    relax.setup([GROUPS[1]])
    with torch.no_grad():
        relax.alphas[0].copy_(torch.tensor([[0.0, 1.0]]))
    torch.manual_seed(2)
    hits = sum(relax.mixing_weights().active["block"][0][1] for _ in range(2000))
    assert abs(hits / 2000 - torch.sigmoid(torch.tensor(1.0)).item()) < 0.04


def test_eval_mode_takes_the_argmax_without_noise() -> None:
    relax = _relax()
    relax.eval()
    a = relax.mixing_weights().active
    b = relax.mixing_weights().active
    assert a == b
    assert a["node"] == [(e, int(i)) for e, i in enumerate(relax.alphas[0].argmax(dim=1))]


def test_temperature_schedule() -> None:
    assert gumbel_temperature(0, 10.0, 0.1, 5) == 10.0
    assert gumbel_temperature(4, 10.0, 0.1, 5) == pytest.approx(0.1)
    assert gumbel_temperature(2, 10.0, 0.1, 5) == pytest.approx(5.05)
    assert gumbel_temperature(9, 10.0, 0.1, 5) == pytest.approx(0.1)
    assert gumbel_temperature(2, 10.0, 0.1, 5, "exponential") == pytest.approx(1.0)
    relax = create_gumbel(GumbelConfig(tau_max=4.0, tau_min=1.0), epochs=4)
    relax.setup(GROUPS)
    taus = [relax.on_epoch_end(e)["gumbel/tau"] for e in range(4)]
    assert taus == pytest.approx([3.0, 2.0, 1.0, 1.0])
    assert relax.temperature == pytest.approx(1.0)
    # The temperature is part of the state.
    fresh = create_gumbel(GumbelConfig(tau_max=4.0, tau_min=1.0), epochs=4)
    fresh.setup(GROUPS)
    fresh.load_state_dict(relax.state_dict())
    assert fresh.temperature == pytest.approx(1.0)


def test_anneal_epochs_from_config_wins_over_run_epochs() -> None:
    assert create_gumbel(GumbelConfig(anneal_epochs=7), epochs=3).anneal_epochs == 7
    assert create_gumbel(GumbelConfig(), epochs=3).anneal_epochs == 3


def test_selection_uses_the_darts_rule_with_unit_weights() -> None:
    relax = _relax()
    with torch.no_grad():
        relax.alphas[0].copy_(torch.tensor([[5.0, 0, 0, 1], [5.0, 2, 0, 0], [5.0, 0, 0, 0.5]]))
        relax.alphas[1].copy_(torch.tensor([[0.0, 1.0]]))
    sel = relax.selection()
    assert [(s.edge, s.op, s.weight) for s in sel["node"]] == [(0, 3, 1.0), (1, 1, 1.0)]
    assert [(s.edge, s.op) for s in sel["block"]] == [(0, 1)]


def _tiny() -> Any:
    reg = get_registry()
    spec = DataSpec(num_classes=3, channels=3, image_size=4)
    return reg.create("space", reg.get("space", "tiny").config(channels=2, keep=2), data_spec=spec)


def test_single_level_mode_steps_on_the_training_gradient() -> None:
    space = _tiny()
    net = space.build_supernet()
    relax = GumbelRelaxation(GumbelConfig(bilevel=False, lr=0.01))
    relax.setup(space.choice_groups())
    assert not relax.bilevel
    x, y = torch.randn(4, 3, 4, 4), torch.randint(0, 3, (4,))
    torch.manual_seed(3)
    F.cross_entropy(net(x, relax.mixing_weights()), y).backward()
    grads = [a.grad.clone() for a in relax.alphas]
    before = [a.detach().clone() for a in relax.alphas]
    fail = lambda b: (_ for _ in ()).throw(AssertionError("single level must not re-evaluate"))  # noqa: E731
    relax.arch_step(ArchStepContext(loss=fail, weight_params=[], weight_lr=0.1))
    for a, b0, g in zip(relax.alphas, before, grads):
        moved = a.detach() - b0
        # First Adam step: -lr * g / (|g| + eps) elementwise, L2 on alpha aside.
        assert torch.allclose(moved, -0.01 * torch.sign(g + 1e-3 * b0), atol=1e-5)
        assert a.grad is None
