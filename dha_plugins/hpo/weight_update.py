"""The weight-update core shared by ``hpo=fixed`` and ``hpo=hypergrad``.

Both hyper-optimizers write every weight update in the same form::

    theta' = theta - lr * d

where ``d`` is the optimizer's *direction*, weight decay included. Keeping ``d`` explicit
is what makes the closed-form hypergradient cheap: ``dtheta'/dlr = -d`` and
``dtheta'/dwd = -lr * c * theta`` with a constant ``c`` per optimizer
(:attr:`WeightOptimizer.wd_factor`), see ``docs/hpo.md``.

The functional core (:func:`sgd_direction`, :func:`adamw_direction`,
:func:`apply_direction`) follows PyTorch's ``torch.optim.SGD`` (dampening 0, coupled L2
decay) and ``torch.optim.AdamW`` (decoupled decay, no amsgrad) exactly, so the baseline
and the learned variant train the same way at equal hyper-parameters. It works on lists
of tensors with ``torch._foreach_*`` kernels: one kernel launch per list, not per tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = [
    "OptimizerKind",
    "WeightGroup",
    "WeightOptimizer",
    "adamw_direction",
    "apply_direction",
    "normalize_groups",
    "sgd_direction",
]

OptimizerKind = Literal["sgd", "adamw"]


def sgd_direction(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    weight_decay: float,
    momentum: float,
    nesterov: bool,
) -> list[Tensor]:
    """SGD direction with coupled L2 decay and (Nesterov) momentum, as ``torch.optim.SGD``.

    ``g' = g + wd * theta``; ``buf <- mu * buf + g'`` (``buf = g'`` on the first step);
    ``d = g' + mu * buf`` with Nesterov, else ``d = buf``.

    Args:
        params: Weights ``theta`` (read only).
        grads: Loss gradients at ``theta``, same order.
        momentum_buffers: One entry per weight, ``None`` before the first step. Updated in
            place (a new buffer is stored where the entry was ``None``).
        weight_decay: L2 coefficient ``wd``.
        momentum: ``mu`` in ``[0, 1)``; 0 disables the buffers.
        nesterov: Nesterov momentum.

    Returns:
        The directions ``d``. Without Nesterov they *are* the momentum buffers, and with
        ``momentum == weight_decay == 0`` they are the gradients themselves: treat them as
        read-only and copy them if they must survive the next step.
    """
    grads = list(grads)
    if weight_decay != 0:
        grads = torch._foreach_add(grads, list(params), alpha=weight_decay)
    if momentum == 0:
        return grads
    fresh = [i for i, b in enumerate(momentum_buffers) if b is None]
    old = [i for i, b in enumerate(momentum_buffers) if b is not None]
    if old:
        bufs = [momentum_buffers[i] for i in old]
        torch._foreach_mul_(bufs, momentum)
        torch._foreach_add_(bufs, [grads[i] for i in old])
    for i in fresh:
        # PyTorch starts the buffer at the first (decayed) gradient, i.e. mu * 0 + g'.
        momentum_buffers[i] = grads[i].detach().clone()
    bufs = [b for b in momentum_buffers if b is not None]
    if nesterov:
        return torch._foreach_add(grads, bufs, alpha=momentum)
    return bufs


def adamw_direction(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    exp_avgs: Sequence[Tensor],
    exp_avg_sqs: Sequence[Tensor],
    steps: Sequence[int],
    *,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
) -> list[Tensor]:
    """AdamW direction ``d = m_hat / (sqrt(v_hat) + eps) + wd * theta``, as ``torch.optim.AdamW``.

    PyTorch applies the decay as ``theta * (1 - lr * wd)`` before the Adam step; that is
    the same update as ``theta - lr * d`` with the decay folded into ``d``.

    Args:
        params: Weights ``theta`` (read only).
        grads: Loss gradients at ``theta``.
        exp_avgs: First moments ``m``, updated in place.
        exp_avg_sqs: Second moments ``v``, updated in place.
        steps: Step count of each weight *including* this step (1 on the first step).
        weight_decay: Decoupled decay coefficient ``wd``.
        betas: ``(beta1, beta2)``.
        eps: Denominator term.

    Returns:
        The directions ``d`` (new tensors).
    """
    beta1, beta2 = betas
    grads = list(grads)
    exp_avgs, exp_avg_sqs = list(exp_avgs), list(exp_avg_sqs)
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, [(1 - beta2**t) ** 0.5 for t in steps])
    torch._foreach_add_(denom, eps)
    direction = torch._foreach_div(exp_avgs, denom)
    torch._foreach_div_(direction, [1 - beta1**t for t in steps])
    if weight_decay != 0:
        torch._foreach_add_(direction, list(params), alpha=weight_decay)
    return direction


def apply_direction(params: Sequence[Tensor], directions: Sequence[Tensor], lr: float) -> None:
    """In place ``theta <- theta - lr * d`` (call under ``torch.no_grad()``)."""
    if params:
        torch._foreach_add_(list(params), list(directions), alpha=-lr)


class WeightGroup(dict):
    """A normalised parameter group: ``name``, ``params``, ``lr``, ``weight_decay``, ``decay``.

    ``decay`` is False for groups that never get weight decay (BN and bias parameters);
    their ``weight_decay`` stays 0. ``lr`` and ``weight_decay`` mirror the values the last
    weight step used, so torch-style code that reads ``group["lr"]`` keeps working.
    """


def normalize_groups(
    param_groups: Sequence[dict[str, Any]], no_decay_groups: Sequence[str], default_wd: float
) -> list[WeightGroup]:
    """Copies the orchestrator's groups into :class:`WeightGroup` s.

    A group is decay-free when its name is in ``no_decay_groups`` or it sets
    ``"weight_decay": 0``. Other keys of the input groups are kept.

    Args:
        param_groups: ``[{"name": str, "params": [Tensor, ...]}, ...]``.
        no_decay_groups: Names of the groups that get no weight decay.
        default_wd: Initial ``weight_decay`` of the decaying groups without their own value.

    Returns:
        The groups, in order.

    Raises:
        ValueError: No parameters at all, or a parameter in two groups. An empty group is
            kept (it simply never steps), so a split that leaves one side empty still works.
    """
    if not any(len(list(g["params"])) for g in param_groups):
        raise ValueError("attach() needs at least one parameter")
    seen: set[int] = set()
    groups: list[WeightGroup] = []
    for index, raw in enumerate(param_groups):
        params = list(raw["params"])
        name = str(raw.get("name", f"group{index}"))
        for p in params:
            if id(p) in seen:
                raise ValueError(f"a parameter of group {name!r} also appears in an earlier group")
            seen.add(id(p))
        decay = name not in no_decay_groups and raw.get("weight_decay", None) != 0
        group = WeightGroup(raw)
        group.update(
            name=name,
            params=params,
            decay=decay,
            weight_decay=float(raw.get("weight_decay", default_wd)) if decay else 0.0,
        )
        groups.append(group)
    return groups


class WeightOptimizer:
    """Per-weight state (momentum or Adam moments) and the direction of one step.

    It owns no hyper-parameters: each call gets the weight decay, and the caller applies
    the learning rate (:func:`apply_direction`). State is indexed by the position of the
    weight in the flattened parameter groups, which makes :meth:`state_dict` loadable with
    ``torch.load(weights_only=True)``.

    Args:
        kind: ``"sgd"`` or ``"adamw"``.
        num_params: Number of weights (flattened over groups).
        momentum: SGD momentum ``mu``.
        nesterov: SGD Nesterov momentum.
        betas: AdamW ``(beta1, beta2)``.
        eps: AdamW denominator term.
    """

    def __init__(
        self,
        kind: OptimizerKind,
        num_params: int,
        *,
        momentum: float = 0.0,
        nesterov: bool = False,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        if kind not in ("sgd", "adamw"):
            raise ValueError(f"unknown weight optimizer {kind!r}; expected 'sgd' or 'adamw'")
        self.kind: OptimizerKind = kind
        self.momentum = momentum
        self.nesterov = nesterov
        self.betas = betas
        self.eps = eps
        self.momentum_buffers: list[Tensor | None] = [None] * num_params
        self.exp_avgs: list[Tensor | None] = [None] * num_params
        self.exp_avg_sqs: list[Tensor | None] = [None] * num_params
        self.steps: list[int] = [0] * num_params

    @property
    def wd_factor(self) -> float:
        """``c`` in ``dtheta'/dwd = -lr * c * theta`` (``1 + mu`` for Nesterov SGD, else 1)."""
        return 1.0 + self.momentum if self.kind == "sgd" and self.nesterov else 1.0

    def directions(
        self, params: Sequence[Tensor], indices: Sequence[int], weight_decay: float
    ) -> tuple[list[int], list[Tensor], list[Tensor]]:
        """Advances the state of the weights that have a gradient and returns their directions.

        Weights whose ``.grad`` is None are skipped and keep their state, like torch.optim.

        Args:
            params: The weights of one group.
            indices: Their flat indices (positions in the state lists).
            weight_decay: This group's decay.

        Returns:
            ``(indices, params, directions)`` of the weights that stepped.
        """
        live = [(i, p) for i, p in zip(indices, params, strict=True) if p.grad is not None]
        if not live:
            return [], [], []
        idx = [i for i, _ in live]
        ps = [p for _, p in live]
        grads = [p.grad for p in ps]
        if self.kind == "sgd":
            bufs = [self.momentum_buffers[i] for i in idx]
            d = sgd_direction(
                ps, grads, bufs, weight_decay=weight_decay, momentum=self.momentum, nesterov=self.nesterov
            )
            for i, b in zip(idx, bufs, strict=True):
                self.momentum_buffers[i] = b
            return idx, ps, d
        for i, p in live:
            if self.exp_avgs[i] is None:
                self.exp_avgs[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
                self.exp_avg_sqs[i] = torch.zeros_like(p, memory_format=torch.preserve_format)
            self.steps[i] += 1
        d = adamw_direction(
            ps,
            grads,
            [self.exp_avgs[i] for i in idx],  # type: ignore[misc]
            [self.exp_avg_sqs[i] for i in idx],  # type: ignore[misc]
            [self.steps[i] for i in idx],
            weight_decay=weight_decay,
            betas=self.betas,
            eps=self.eps,
        )
        return idx, ps, d

    def state_dict(self) -> dict[str, Any]:
        """Per-weight buffers as ``{index: tensor}`` maps plus the step counts."""

        def pack(items: list[Tensor | None]) -> dict[int, Tensor]:
            return {i: t for i, t in enumerate(items) if t is not None}

        return {
            "kind": self.kind,
            "momentum_buffers": pack(self.momentum_buffers),
            "exp_avgs": pack(self.exp_avgs),
            "exp_avg_sqs": pack(self.exp_avg_sqs),
            "steps": list(self.steps),
        }

    def load_state_dict(self, state: dict[str, Any], params: Sequence[Tensor]) -> None:
        """Restores :meth:`state_dict`, moving buffers to each weight's device and dtype.

        Raises:
            ValueError: The state belongs to another optimizer kind or parameter count.
        """
        if state["kind"] != self.kind:
            raise ValueError(f"state is for weight optimizer {state['kind']!r}, not {self.kind!r}")
        if len(state["steps"]) != len(params):
            raise ValueError(f"state has {len(state['steps'])} weights, the attached groups {len(params)}")

        def unpack(items: dict[int, Tensor]) -> list[Tensor | None]:
            out: list[Tensor | None] = [None] * len(params)
            for i, t in items.items():
                out[int(i)] = t.detach().to(device=params[int(i)].device, dtype=params[int(i)].dtype).clone()
            return out

        self.momentum_buffers = unpack(state["momentum_buffers"])
        self.exp_avgs = unpack(state["exp_avgs"])
        self.exp_avg_sqs = unpack(state["exp_avg_sqs"])
        self.steps = [int(t) for t in state["steps"]]
