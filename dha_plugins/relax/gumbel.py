"""``relax=gumbel``: GDAS-style hard Gumbel-softmax sampling (Dong & Yang, 2019).

Every group holds logits ``alpha`` of shape ``(edges, ops)``. In training mode each call of
:meth:`GumbelRelaxation.mixing_weights` draws, per edge, ``k = argmax(alpha + g)`` with
Gumbel noise ``g`` and returns the straight-through weights

    w = one_hot(k) + h - stopgrad(h),    h = softmax((alpha + g) / tau),

whose value is exactly one-hot (so only the sampled op of each edge is computed) and
whose gradient is the one of ``h``. ``tau`` is annealed from ``tau_max`` to ``tau_min``
over ``anneal_epochs``. In eval mode the argmax op of each edge is used, without noise.

The whole plugin is this one file plus its registration: the DARTS genotype rule and the
Adam state come from the shared helpers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import ArchRelaxation, ArchStepContext
from dha_core.types import ChoiceGroup, MixingWeights, Selection
from dha_plugins.relax.arch_adam import AdamState
from dha_plugins.relax.darts_rule import darts_selection
from dha_plugins.relax.unrolled import grads_or_zeros

__all__ = ["GumbelConfig", "GumbelRelaxation", "create_gumbel", "gumbel_temperature"]

DEFAULT_ANNEAL_EPOCHS = 50


class GumbelConfig(ComponentConfig):
    """Config of the GDAS-style relaxation (defaults follow GDAS)."""

    tau_max: float = Field(10.0, gt=0, description="Temperature at the first epoch.")
    tau_min: float = Field(0.1, gt=0, description="Temperature reached after anneal_epochs.")
    anneal_epochs: int | None = Field(
        None, ge=1, description=f"Epochs of the schedule; null uses the run's epochs or {DEFAULT_ANNEAL_EPOCHS}."
    )
    schedule: Literal["linear", "exponential"] = "linear"
    bilevel: bool = Field(
        True, description="Learn alpha from a validation batch (GDAS); else from the training backward."
    )
    lr: float = Field(3e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(1e-3, ge=0)
    init_std: float = Field(1e-3, ge=0)
    seed: int = Field(0, ge=0, description="Seed of alpha's initialisation (sampling uses torch's RNG).")


def gumbel_temperature(epoch: int, tau_max: float, tau_min: float, epochs: int, schedule: str = "linear") -> float:
    """The temperature after ``epoch`` completed epochs.

    Args:
        epoch: Completed epochs (0 gives ``tau_max``).
        tau_max: Start temperature.
        tau_min: End temperature, reached at ``epochs`` and kept afterwards.
        epochs: Length of the schedule.
        schedule: ``"linear"`` (GDAS) or ``"exponential"`` (geometric interpolation).

    Returns:
        The temperature.
    """
    frac = min(max(epoch, 0) / max(epochs - 1, 1), 1.0)
    if schedule == "linear":
        return tau_max - (tau_max - tau_min) * frac
    return tau_max * math.exp(frac * math.log(tau_min / tau_max))


class GumbelRelaxation(ArchRelaxation):
    """Hard one-hot Gumbel samples per edge with straight-through gradients.

    Args:
        config: A :class:`GumbelConfig`.
        epochs: The run's search epochs, used when ``config.anneal_epochs`` is null.
    """

    def __init__(self, config: GumbelConfig, epochs: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.bilevel = config.bilevel
        self.anneal_epochs = config.anneal_epochs or epochs or DEFAULT_ANNEAL_EPOCHS
        self.groups: list[ChoiceGroup] = []
        self.alphas = nn.ParameterList()
        self.adam = nn.ModuleList()
        self._tau = float(config.tau_max)

    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        """Creates one ``(edges, ops)`` logit tensor per group.

        Args:
            groups: The space's choice groups (may be empty).
            space: Unused.
        """
        self.groups = list(groups)
        gen = torch.Generator().manual_seed(self.config.seed)
        self.alphas = nn.ParameterList(
            [nn.Parameter(self.config.init_std * torch.randn(g.shape, generator=gen)) for g in self.groups]
        )
        self.adam = nn.ModuleList([AdamState(a) for a in self.alphas])

    @property
    def temperature(self) -> float:
        """The current temperature ``tau``."""
        return self._tau

    def mixing_weights(self) -> MixingWeights:
        """Samples one op per edge (training mode) or takes the argmax (eval mode).

        Returns:
            Straight-through one-hot weights; ``active`` lists the chosen ``(edge, op)``
            pair of every edge. Reading the sampled indices costs one small device
            synchronisation per call, which GDAS pays too.
        """
        values: dict[str, torch.Tensor] = {}
        active: dict[str, list[tuple[int, int]] | None] = {}
        for g, alpha in zip(self.groups, self.alphas, strict=True):
            if self.training:
                u = torch.rand_like(alpha).clamp_(min=torch.finfo(alpha.dtype).tiny, max=1.0 - 1e-7)
                logits = alpha - torch.log(-torch.log(u))
            else:
                logits = alpha
            soft = torch.softmax(logits / self._tau, dim=-1)
            index = logits.argmax(dim=-1)
            hard = F.one_hot(index, num_classes=alpha.shape[-1]).to(soft)
            # hard + (soft - stopgrad(soft)): the value is exactly one-hot (no rounding
            # of 1 - s + s), the gradient is the one of the relaxed sample.
            values[g.name] = hard + (soft - soft.detach())
            active[g.name] = [(e, int(o)) for e, o in enumerate(index.tolist())]
        return MixingWeights(values, active)

    def selection(self) -> Selection:
        probs = {g.name: torch.softmax(a, dim=-1) for g, a in zip(self.groups, self.alphas, strict=True)}
        # The search forward used hard one-hot weights (value 1), so the child uses 1 too.
        return darts_selection(self.groups, probs, fold_weights=False)

    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        """One Adam step on alpha.

        Bilevel (default): from ``ctx.loss(ctx.val_batch)``, first order. Single level:
        from the gradients the training backward left in ``alpha.grad``.
        """
        if not self.groups:
            return {}
        params = list(self.alphas)
        metrics: dict[str, float] = {"gumbel/tau": self._tau}
        if self.bilevel:
            if ctx.val_batch is None:
                raise ValueError("relax=gumbel with bilevel=true: arch_step needs ctx.val_batch")
            loss = ctx.loss(ctx.val_batch)
            grads = [g.detach() for g in grads_or_zeros(loss, params)]
            metrics["gumbel/val_loss"] = float(loss.detach())
        else:
            grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in params]
        c = self.config
        for alpha, state, grad in zip(params, self.adam, grads, strict=True):
            state.step(alpha, grad, c.lr, c.betas, 1e-8, c.weight_decay)
            alpha.grad = None
        return metrics

    def on_epoch_end(self, epoch: int, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Anneals the temperature: after epoch ``epoch`` (0-based) it is the schedule at ``epoch + 1``."""
        c = self.config
        self._tau = gumbel_temperature(epoch + 1, c.tau_max, c.tau_min, self.anneal_epochs, c.schedule)
        return {"gumbel/tau": self._tau}

    def report(self) -> dict[str, Any]:
        return {"relax": "gumbel", "final_tau": self._tau}

    # The temperature travels as a Python float (exact, and no float64 buffer that some
    # devices cannot hold), so a resumed run samples exactly as an uninterrupted one.
    def get_extra_state(self) -> dict[str, float]:
        return {"tau": self._tau}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self._tau = float(state["tau"])


def create_gumbel(config: GumbelConfig, epochs: int | None = None) -> GumbelRelaxation:
    """GDAS: hard one-hot Gumbel sample per edge, straight-through, annealed temperature."""
    return GumbelRelaxation(config, epochs=epochs)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("relax", "gumbel", create_gumbel, config=GumbelConfig)
