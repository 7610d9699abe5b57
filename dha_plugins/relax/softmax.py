"""``relax=softmax``: DARTS' continuous relaxation (Liu et al., 2019).

Every group holds logits ``alpha`` of shape ``(edges, ops)``; an edge mixes its candidates
with ``softmax(alpha[e])``. All candidates are computed (dense). The architecture is
bilevel: it learns from a validation batch, to first order (``grad_alpha L_val(w, alpha)``)
or to second order through one unrolled weight step with a finite-difference
Hessian-vector product (see :mod:`dha_plugins.relax.unrolled`). An optional differentiable
resource penalty ``penalty * sum(softmax(alpha) * cost) / cost_ref`` steers the search
toward cheaper candidates when the space can report per-candidate costs.

The discrete architecture follows DARTS' genotype rule: per group, the ``keep`` edges whose
best non-``none`` op is strongest, each with that op.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from pydantic import Field
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import ArchRelaxation, ArchStepContext
from dha_core.types import ChoiceGroup, MixingWeights, Selection
from dha_plugins.relax.arch_adam import AdamState
from dha_plugins.relax.darts_rule import darts_selection, group_costs
from dha_plugins.relax.unrolled import grads_or_zeros, unrolled_arch_grads

__all__ = ["SoftmaxConfig", "SoftmaxRelaxation", "create_softmax"]

log = logging.getLogger(__name__)


class SoftmaxConfig(ComponentConfig):
    """Config of the DARTS relaxation (defaults follow DARTS' CIFAR-10 search)."""

    order: Literal["first", "second"] = Field("first", description="First- or second-order architecture gradient.")
    lr: float = Field(3e-4, gt=0, description="Adam learning rate of alpha.")
    betas: tuple[float, float] = Field((0.5, 0.999), description="Adam betas of alpha.")
    weight_decay: float = Field(1e-3, ge=0, description="L2 on alpha.")
    init_std: float = Field(1e-3, ge=0, description="alpha ~ init_std * N(0, 1).")
    fd_eps: float = Field(0.01, gt=0, description="Second order: eps = fd_eps / ||grad_w' L_val||.")
    unrolled_lr: float | None = Field(
        None, gt=0, description="Learning rate xi of the virtual step; null uses the weight optimizer's."
    )
    penalty: float = Field(0.0, ge=0, description="Weight of the resource penalty; 0 disables it.")
    penalty_metric: Literal["params", "flops", "latency"] = Field(
        "params", description="Candidate cost of the penalty: params, flops or latency (timed by the space).")
    fold_weights: bool = Field(
        True, description="Selected ops keep their softmax weight as scale (else weight 1, as in DARTS' retraining)."
    )
    seed: int = Field(0, ge=0, description="Seed of alpha's initialisation.")


class SoftmaxRelaxation(ArchRelaxation):
    """Dense ``softmax(alpha)`` mixing per edge; bilevel, first or second order.

    Args:
        config: A :class:`SoftmaxConfig`.
    """

    bilevel = True

    def __init__(self, config: SoftmaxConfig) -> None:
        super().__init__()
        self.config = config
        self.groups: list[ChoiceGroup] = []
        self.alphas = nn.ParameterList()
        self.adam = nn.ModuleList()
        self._costs: dict[str, torch.Tensor] | None = None
        self._cost_ref = 1.0

    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        """Creates one ``(edges, ops)`` logit tensor per group.

        Args:
            groups: The space's choice groups (may be empty).
            space: The search space; used for candidate costs when ``penalty > 0``.
        """
        self.groups = list(groups)
        gen = torch.Generator().manual_seed(self.config.seed)
        self.alphas = nn.ParameterList(
            [nn.Parameter(self.config.init_std * torch.randn(g.shape, generator=gen)) for g in self.groups]
        )
        self.adam = nn.ModuleList([AdamState(a) for a in self.alphas])
        self._costs = None
        if self.config.penalty > 0 and self.groups:
            costs = group_costs(space, self.groups, self.config.penalty_metric)
            if costs is None:
                log.warning("softmax: the space reports no %s per candidate; the resource penalty is disabled",
                            self.config.penalty_metric)
            else:
                self._costs = costs
                # Normalise by the cost of the most expensive choice on every edge, so the
                # penalty lies in [0, penalty] whatever the unit (params or FLOPs).
                ref = sum(float(c.max(dim=1).values.sum()) for c in costs.values())
                self._cost_ref = ref if ref > 0 else 1.0

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Group name -> ``softmax(alpha)`` over ops, shape ``(edges, ops)``."""
        return {g.name: torch.softmax(a, dim=-1) for g, a in zip(self.groups, self.alphas, strict=True)}

    def mixing_weights(self) -> MixingWeights:
        probs = self.probabilities()
        return MixingWeights(probs, {g.name: None for g in self.groups})

    def expected_cost(self) -> torch.Tensor | None:
        """``sum_g sum(softmax(alpha_g) * cost_g)`` in the metric's unit, or ``None``."""
        if self._costs is None:
            return None
        probs = self.probabilities()
        return sum((probs[n] * c.to(probs[n])).sum() for n, c in self._costs.items())

    def penalty_loss(self) -> torch.Tensor | None:
        """The differentiable resource penalty added to the architecture loss, or ``None``."""
        cost = self.expected_cost()
        return None if cost is None else self.config.penalty * cost / self._cost_ref

    def selection(self) -> Selection:
        return darts_selection(self.groups, self.probabilities(), self.config.fold_weights)

    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        """One Adam step on alpha from the validation loss (first or second order).

        Args:
            ctx: Must carry ``val_batch``; second order also needs ``train_batch`` and
                uses ``weight_params``, ``weight_lr``, ``weight_momentum``,
                ``weight_decay`` and, when present, ``ctx.momentum_buffers``
                (the weight optimizer's buffers aligned with ``weight_params``).

        Returns:
            ``softmax/val_loss`` (and ``softmax/penalty`` when enabled).
        """
        if not self.groups:
            return {}
        if ctx.val_batch is None:
            raise ValueError("relax=softmax is bilevel: arch_step needs ctx.val_batch")
        params = list(self.alphas)
        if self.config.order == "second":
            if ctx.train_batch is None:
                raise ValueError("relax=softmax order=second needs ctx.train_batch for the unrolled step")
            grads, val_loss = unrolled_arch_grads(
                ctx.loss,
                params,
                ctx.weight_params,
                ctx.train_batch,
                ctx.val_batch,
                lr=self.config.unrolled_lr or ctx.weight_lr,
                momentum=ctx.weight_momentum,
                weight_decay=ctx.weight_decay,
                momentum_buffers=ctx.momentum_buffers,
                r=self.config.fd_eps,
            )
        else:
            loss = ctx.loss(ctx.val_batch)
            grads = [g.detach() for g in grads_or_zeros(loss, params)]
            val_loss = loss.detach()
        metrics = {"softmax/val_loss": float(val_loss)}
        penalty = self.penalty_loss()
        if penalty is not None:
            # The penalty does not involve the weights, so its gradient simply adds.
            grads = [g + p for g, p in zip(grads, grads_or_zeros(penalty, params), strict=True)]
            metrics["softmax/penalty"] = float(penalty.detach())
        self.apply_grads(grads)
        return metrics

    def apply_grads(self, grads: Sequence[torch.Tensor]) -> None:
        """One Adam update of every alpha with ``grads`` (aligned with ``self.alphas``)."""
        c = self.config
        for alpha, state, g in zip(self.alphas, self.adam, grads, strict=True):
            state.step(alpha, g, c.lr, c.betas, 1e-8, c.weight_decay)

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {"relax": "softmax", "order": self.config.order}
        cost = self.expected_cost()
        if cost is not None:
            out[f"expected_{self.config.penalty_metric}"] = float(cost.detach())
        return out


def create_softmax(config: SoftmaxConfig) -> SoftmaxRelaxation:
    """DARTS: dense softmax mixing, bilevel first/second order, optional resource penalty."""
    return SoftmaxRelaxation(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("relax", "softmax", create_softmax, config=SoftmaxConfig)
