"""``hpo=hypergrad``: online closed-form hypergradient descent on lr and weight decay.

Every weight update has the form ``theta' = theta - lr * d`` (see
:mod:`dha_plugins.hpo.weight_update`). With ``h = grad L_hyper(theta')`` the one-step
hypergradients are (derivation in ``docs/hpo.md``)::

    dL/dlr = -<h, d>
    dL/dwd = -lr * c * <h, theta>        c = 1 + mu for Nesterov SGD, else 1

They need no graph through the optimizer: only ``d`` is kept from the weight step, and
``<h, theta>`` is recovered as ``<h, theta'> + lr * <h, d>``, so the pre-step weights are
never copied.

``h`` comes from a clean held-out batch at ``theta'`` (``hyper_batch="held_out"``, one
extra forward/backward, what the DHA authors do) or from the next iteration's training
gradient (``hyper_batch="next_train"``, free; hypergradient descent of Baydin et al. 2018).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, ValidationInfo, field_validator, model_validator
from torch import Tensor

from dha_core.budget import cosine_anneal
from dha_core.config_base import ComponentConfig
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import HyperGradFn
from dha_plugins.hpo.weight_owner import WeightOwningHyperOptimizer
from dha_plugins.hpo.weight_update import apply_direction, sgd_direction

__all__ = [
    "HypergradHPOConfig",
    "HypergradHyperOptimizer",
    "LearnedScalar",
    "create_hypergrad",
]


class HypergradHPOConfig(ComponentConfig):
    """Weight optimizer, bounds and hyper-optimizer of the learned lr and wd.

    Bounds are validated when the config is built: ``0 < low < up`` for both the lr and
    the wd, and a given initial value must lie inside them. The error names the field.
    """

    optimizer: Literal["sgd", "adamw"] = Field("sgd", description="Weight optimizer.")
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum.")
    nesterov: bool = Field(False, description="SGD Nesterov momentum.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    eps: float = Field(1e-8, gt=0, description="AdamW denominator term.")
    lr_low: float = Field(
        0.025, gt=0, description="Lower bound of the lr; with lr_up 0.5 the default start (the geometric "
        "midpoint) is 0.112. Chosen by measurement (docs/hpo.md, \"The floor\")."
    )
    lr_up: float = Field(0.5, gt=0, description="Upper bound of the lr.")
    lr_init: float | None = Field(None, gt=0, description="Initial lr; None: midpoint of the bounds.")
    wd_low: float = Field(3e-5, gt=0, description="Lower bound of the weight decay.")
    wd_up: float = Field(3e-3, gt=0, description="Upper bound of the weight decay.")
    wd_init: float | None = Field(None, gt=0, description="Initial wd; None: midpoint of the bounds.")
    log_space: bool = Field(
        True,
        description="Learn log(lr) and log(wd): bounds and midpoint are taken in log space and "
        "the hypergradient is scaled by the value (chain rule).",
    )
    per_group: bool = Field(False, description="One (lr, wd) pair per parameter group instead of one shared.")
    no_decay_groups: tuple[str, ...] = Field(
        ("no_decay",), description="Parameter groups (BN, bias) whose wd is fixed at 0 and not learned."
    )
    lr_hyper_lr: float = Field(0.02, ge=0, description="Step size of the hyper-optimizer on the lr.")
    wd_hyper_lr: float = Field(0.02, ge=0, description="Step size of the hyper-optimizer on the wd.")
    hyper_optimizer: Literal["sgd", "adam"] = Field(
        "adam",
        description="sgd: the step is step_size x hypergradient (scale-dependent). adam: Adam's normalised step, "
        "so a consistent hypergradient moves the value by about step_size per step whatever its scale.",
    )
    hyper_momentum: float = Field(0.0, ge=0, lt=1, description="Momentum of the hyper-optimizer (SGD).")
    hyper_nesterov: bool = Field(False, description="Nesterov momentum for the hyper-optimizer.")
    hyper_betas: tuple[float, float] = Field((0.9, 0.999), description="Betas of the hyper-optimizer (adam).")
    decay: Literal["none", "cosine"] = Field(
        "cosine",
        description="Budget-aware decay on top of the learned lr: the weight step uses learned_lr x factor(progress), "
        "with a cosine factor from 1 to decay_final over the stage (steps or time budget).",
    )
    decay_final: float = Field(0.02, gt=0, le=1, description="Factor of the cosine decay at the end of the stage.")
    hyper_batch: Literal["held_out", "next_train"] = Field(
        "next_train",
        description="Where grad L_hyper comes from: a clean held-out batch (one extra forward/backward) "
        "or the next iteration's training gradient (free).",
    )
    hyper_batch_size: int | None = Field(
        None, ge=1, description="Batch size of the held-out hyper batch; None: the training batch size."
    )

    @field_validator("lr_up", "wd_up")
    @classmethod
    def _up_above_low(cls, value: float, info: ValidationInfo) -> float:
        low_field = info.field_name.replace("_up", "_low")  # type: ignore[union-attr]
        low = info.data.get(low_field)
        if low is not None and value <= low:
            raise ValueError(f"{info.field_name} ({value}) must be greater than {low_field} ({low})")
        return value

    @field_validator("lr_init", "wd_init")
    @classmethod
    def _init_inside(cls, value: float | None, info: ValidationInfo) -> float | None:
        prefix = info.field_name.split("_")[0]  # type: ignore[union-attr]
        low, up = info.data.get(f"{prefix}_low"), info.data.get(f"{prefix}_up")
        if value is not None and low is not None and up is not None and not low <= value <= up:
            raise ValueError(f"{info.field_name} ({value}) must lie in [{prefix}_low, {prefix}_up] = [{low}, {up}]")
        return value

    @model_validator(mode="after")
    def _check(self) -> HypergradHPOConfig:
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if self.hyper_nesterov and self.hyper_momentum == 0:
            raise ValueError("hyper_nesterov needs hyper_momentum > 0")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must lie in [0, 1), got {self.betas}")
        return self


class LearnedScalar:
    """One learned hyper-parameter (an lr or a wd) as a 0-dim float64 tensor.

    ``raw`` is the value in its parametrization: the value itself, or its log. The
    hyper-optimizer is SGD on ``raw`` (shared core :func:`sgd_direction`), followed by a
    clamp of ``raw`` to the bounds.

    Args:
        low: Lower bound of the value.
        up: Upper bound of the value.
        init: Initial value; None starts at the midpoint of the bounds in the
            parametrization (arithmetic, or geometric in log space).
        log_space: Parametrize by ``log(value)``.
        step_size: Step size of the hyper-optimizer.
        momentum: Its momentum.
        nesterov: Its Nesterov flag.
    """

    def __init__(
        self,
        low: float,
        up: float,
        init: float | None,
        *,
        log_space: bool,
        step_size: float,
        momentum: float,
        nesterov: bool,
        optimizer: str = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
    ) -> None:
        self.log_space = log_space
        self.step_size = step_size
        self.momentum = momentum
        self.nesterov = nesterov
        self.optimizer = optimizer
        self.betas = betas
        # Adam's moments and step count (unused by sgd).
        self.adam_m = 0.0
        self.adam_v = 0.0
        self.adam_t = 0
        to_raw = math.log if log_space else float
        self.low_raw, self.up_raw = to_raw(low), to_raw(up)
        start = to_raw(init) if init is not None else 0.5 * (self.low_raw + self.up_raw)
        self.raw = torch.tensor(start, dtype=torch.float64)
        self.buffer: list[Tensor | None] = [None]

    @property
    def value(self) -> float:
        """The hyper-parameter itself (``exp(raw)`` in log space)."""
        raw = float(self.raw)
        return math.exp(raw) if self.log_space else raw

    def descend(self, grad_value: float) -> None:
        """One hyper-optimizer step given ``dL/dvalue``, then the clamp to the bounds.

        Args:
            grad_value: Hypergradient with respect to the value (not the raw parameter).
        """
        # Chain rule for the log parametrization: dL/dlog(x) = x * dL/dx.
        grad_raw = grad_value * self.value if self.log_space else grad_value
        if self.optimizer == "adam":
            b1, b2 = self.betas
            self.adam_t += 1
            self.adam_m = b1 * self.adam_m + (1 - b1) * grad_raw
            self.adam_v = b2 * self.adam_v + (1 - b2) * grad_raw * grad_raw
            m_hat = self.adam_m / (1 - b1**self.adam_t)
            v_hat = self.adam_v / (1 - b2**self.adam_t)
            self.raw.sub_(self.step_size * m_hat / (math.sqrt(v_hat) + 1e-12)).clamp_(self.low_raw, self.up_raw)
            return
        grad = torch.tensor(grad_raw, dtype=torch.float64)
        (direction,) = sgd_direction(
            [self.raw], [grad], self.buffer, weight_decay=0.0, momentum=self.momentum, nesterov=self.nesterov
        )
        self.raw.sub_(self.step_size * direction).clamp_(self.low_raw, self.up_raw)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"raw": self.raw.clone()}
        if self.optimizer == "adam":
            state["adam"] = [self.adam_m, self.adam_v, self.adam_t]
        if self.buffer[0] is not None:
            state["buffer"] = self.buffer[0].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.raw = state["raw"].detach().to(torch.float64).clone()
        if "adam" in state:
            m, v, t = state["adam"]
            self.adam_m, self.adam_v, self.adam_t = float(m), float(v), int(t)
        buffer = state.get("buffer")
        self.buffer = [None if buffer is None else buffer.detach().to(torch.float64).clone()]


@dataclass
class _Pending:
    """What one group's weight step leaves for its hypergradient."""

    indices: list[int]
    directions: list[Tensor]
    lr: float
    factor: float = 1.0


def _concat(tensors: Sequence[Tensor]) -> Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def _group_dots(h: Sequence[Tensor], d: Sequence[Tensor], theta: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """``(<h, d>, <h, theta>)`` summed over a group's tensors, as 0-dim tensors.

    The tensors are concatenated first: one ``torch.dot`` per tensor costs a Python call
    and a kernel launch each, which dominates the hyper step of a network with hundreds of
    weight tensors. The copies cost a few passes over memory, and in CPU measurements
    this was about 2x faster than per-tensor dots or foreach kernels.
    """
    hf = _concat(h)
    return torch.dot(hf, _concat(d).to(hf.dtype)), torch.dot(hf, _concat(theta).to(hf.dtype))


class HypergradHyperOptimizer(WeightOwningHyperOptimizer):
    """Weight optimizer (SGD or AdamW) whose lr and wd learn from a one-step hypergradient.

    Contract with the caller (the orchestrator), once per iteration:

    1. Put the training gradient at ``theta`` in ``p.grad`` (clipped as it likes).
    2. Call :meth:`step` with ``hyper_grad``: a closure that, at the *current* weights,
       runs a forward/backward on a clean held-out batch of the unregularised loss and
       returns one gradient per attached weight, in the order of the groups flattened
       (``None`` where unused). It may use ``torch.autograd.grad`` or ``backward()``.

    In ``held_out`` mode :meth:`step` takes the weight step, then calls ``hyper_grad``
    exactly once (with grad mode enabled and every ``p.grad`` set to None), then puts the
    training gradients back: after :meth:`step` returns, each ``p.grad`` is the same
    tensor, with the same values, as when it was called, so nothing the closure
    accumulates leaks into the next weight step. The hypergradient is then applied to the
    lr and wd that the *next* step will use.

    In ``next_train`` mode ``hyper_grad`` is never called. The gradients present in
    ``p.grad`` at the next :meth:`step` (the training gradient at ``theta'``) serve as
    ``h`` for the previous step's hypergradient, which is applied before the new weight
    step. The caller must therefore not change the weights between two steps. Zeroing
    the grads in place in between is safe.

    Args:
        config: The validated config.
    """

    config: HypergradHPOConfig

    def __init__(self, config: HypergradHPOConfig) -> None:
        super().__init__(config)
        self.hyper_batch = config.hyper_batch
        self.hyper_batch_size = config.hyper_batch_size
        self._lrs: list[LearnedScalar] = []
        self._wds: list[LearnedScalar | None] = []
        self._pair_of: list[int] = []
        self._pending: list[_Pending] | None = None
        self.steps = 0
        self.hyper_steps = 0
        self.skipped = 0
        self.factor = 1.0

    # ------------------------------------------------------------------ setup
    def attach(self, param_groups: Sequence[dict[str, Any]], total_steps: int) -> None:
        """Takes the weights and creates the learned (lr, wd) pairs; ``total_steps`` is unused."""
        c = self.config
        self._attach_weights(param_groups, 0.0)
        hyper = {"log_space": c.log_space, "momentum": c.hyper_momentum, "nesterov": c.hyper_nesterov,
                 "optimizer": c.hyper_optimizer, "betas": c.hyper_betas}
        n_pairs = len(self._groups) if c.per_group else 1
        self._pair_of = list(range(n_pairs)) if c.per_group else [0] * len(self._groups)
        self._lrs = [
            LearnedScalar(c.lr_low, c.lr_up, c.lr_init, step_size=c.lr_hyper_lr, **hyper) for _ in range(n_pairs)
        ]
        # A pair gets a learned wd only if some group using it decays: BN/bias groups keep wd = 0.
        self._wds = [
            LearnedScalar(c.wd_low, c.wd_up, c.wd_init, step_size=c.wd_hyper_lr, **hyper)
            if any(g["decay"] for g, k in zip(self._groups, self._pair_of, strict=True) if k == pair)
            else None
            for pair in range(n_pairs)
        ]
        self._pending = None
        self.steps = self.hyper_steps = self.skipped = 0
        self._sync_groups()

    def _sync_groups(self) -> None:
        """Mirrors the current values into ``group["lr"]`` / ``group["weight_decay"]``."""
        for g, k in zip(self._groups, self._pair_of, strict=True):
            g["lr"] = self._lrs[k].value * self.factor
            wd = self._wds[k]
            g["weight_decay"] = wd.value if g["decay"] and wd is not None else 0.0

    def on_progress(self, fraction: float) -> None:
        """Sets the budget-aware decay factor (``decay="cosine"``) for the next weight step."""
        c = self.config
        if c.decay == "none":
            return
        self.factor = cosine_anneal(fraction, 1.0, c.decay_final)
        self._sync_groups()

    # ------------------------------------------------------------------ step
    @torch.no_grad()
    def step(self, hyper_grad: HyperGradFn | None = None) -> dict[str, float]:
        """Weight step from ``p.grad``, and the hyper step (see the class docstring).

        Args:
            hyper_grad: The held-out gradient closure; required in ``held_out`` mode,
                ignored in ``next_train`` mode.

        Returns:
            ``lr`` and ``wd`` (of the first non-empty decaying group: the values this
            weight step used), ``hypergrad_lr`` / ``hypergrad_wd`` (``dL/dlr``, ``dL/dwd`` of that
            group's pair, applied during this call; 0 when none was), ``hyper_applied`` (1 or 0),
            ``hyper_skipped`` (non-finite hypergradients skipped so far) and, with
            ``per_group``, ``lr/<group>``, ``wd/<group>``, ``hypergrad_lr/<group>``,
            ``hypergrad_wd/<group>``.

        Raises:
            ValueError: ``held_out`` mode without ``hyper_grad``, or a closure that
                returns the wrong number of gradients.
        """
        weights = self._require_attached()
        if self.hyper_batch == "held_out" and hyper_grad is None:
            raise ValueError("hpo=hypergrad with hyper_batch='held_out' needs the hyper_grad closure in step()")
        grads: tuple[list[float], list[float]] | None = None
        if self.hyper_batch == "next_train" and self._pending is not None:
            grads = self._hyper_step([p.grad for p in self._flat], self._pending)
        self._pending = None

        used = [(g["lr"], g["weight_decay"]) for g in self._groups]
        pending: list[_Pending] = []
        for group, indices in zip(self._groups, self._indices, strict=True):
            idx, params, directions = weights.directions(group["params"], indices, group["weight_decay"])
            apply_direction(params, directions, group["lr"])
            if self.hyper_batch == "next_train":
                # Without momentum and decay the direction *is* p.grad, which the caller
                # may zero in place before the next step: keep a copy.
                directions = [d.clone() if d is p.grad else d for d, p in zip(directions, params, strict=True)]
            pending.append(_Pending(idx, directions, group["lr"], self.factor))

        if self.hyper_batch == "held_out":
            assert hyper_grad is not None
            grads = self._hyper_step(self._held_out_grads(hyper_grad), pending)
        else:
            self._pending = pending
        self.steps += 1
        return self._metrics(used, grads)

    def weights_changed(self) -> None:
        """Drops a pending ``next_train`` hypergradient: its direction was taken on a network
        that has since changed (e.g. ISTA folded alpha into BN), so the next training
        gradient no longer measures the effect of that step. The next hyper step is skipped."""
        self._pending = None

    def _held_out_grads(self, hyper_grad: HyperGradFn) -> list[Tensor | None]:
        """Runs the closure with ``p.grad`` cleared, then restores the training grads."""
        saved = [p.grad for p in self._flat]
        for p in self._flat:
            p.grad = None
        try:
            with torch.enable_grad():  # step() runs under no_grad; the closure needs autograd
                h = list(hyper_grad())
        finally:
            for p, g in zip(self._flat, saved, strict=True):
                p.grad = g
        if len(h) != len(self._flat):
            raise ValueError(f"hyper_grad returned {len(h)} gradients for {len(self._flat)} attached weights")
        return [None if x is None else x.detach() for x in h]

    def _hyper_step(
        self, h: Sequence[Tensor | None], pending: Sequence[_Pending]
    ) -> tuple[list[float], list[float]] | None:
        """Closed-form hypergradients of every pair, then one hyper-optimizer step.

        Args:
            h: ``grad L_hyper(theta')`` per flat weight (None: no contribution).
            pending: What the weight step left, per group; the weights now hold ``theta'``.

        Returns:
            ``(dL/dlr, dL/dwd)`` lists, one entry per learned pair (a shared pair sums its
            groups' terms), or None when the step was skipped because a hypergradient was
            not finite.
        """
        wd_factor = self._require_attached().wd_factor
        dots: list[Tensor] = []
        for rec in pending:
            pairs = zip(rec.indices, rec.directions, strict=True)
            live = [(h[i], d, self._flat[i]) for i, d in pairs if h[i] is not None]
            if live:
                dots.extend(_group_dots(*zip(*live)))  # <h, d>, <h, theta'>
            else:
                dots.extend([torch.zeros(()), torch.zeros(())])
        # One device->host transfer for all groups (float64 where the device has it).
        device = next((x.device for x in dots if x.device.type != "cpu"), torch.device("cpu"))
        dtype = torch.float32 if device.type == "mps" else torch.float64
        values = torch.stack([x.to(device=device, dtype=dtype) for x in dots]).cpu().tolist()
        dlr_group, dwd_group = [], []
        for g, rec, (hd, h_theta_new) in zip(self._groups, pending, zip(values[0::2], values[1::2]), strict=True):
            h_theta = h_theta_new + rec.lr * hd  # <h, theta> from theta = theta' + lr * d
            # The step used lr = learned * factor: dL/dlearned = factor * dL/dlr.
            dlr_group.append(-hd * rec.factor)
            dwd_group.append(-rec.lr * wd_factor * h_theta if g["decay"] else 0.0)
        n_pairs = len(self._lrs)
        dlr = [0.0] * n_pairs
        dwd = [0.0] * n_pairs
        for k, a, b in zip(self._pair_of, dlr_group, dwd_group, strict=True):
            dlr[k] += a
            dwd[k] += b
        if not all(math.isfinite(x) for x in dlr + dwd):
            self.skipped += 1
            return None
        for k in range(n_pairs):
            self._lrs[k].descend(dlr[k])
            wd = self._wds[k]
            if wd is not None:
                wd.descend(dwd[k])
        self.hyper_steps += 1
        self._sync_groups()
        return dlr, dwd

    def _primary(self) -> int:
        """Index of the group reported as ``lr``/``wd``: the first non-empty one that decays."""
        candidates = [i for i, g in enumerate(self._groups) if g["params"]]
        return next((i for i in candidates if self._groups[i]["decay"]), candidates[0])

    def _metrics(
        self, used: list[tuple[float, float]], grads: tuple[list[float], list[float]] | None
    ) -> dict[str, float]:
        main = self._primary()
        n_pairs = len(self._lrs)
        dlr, dwd = grads if grads is not None else ([0.0] * n_pairs, [0.0] * n_pairs)
        metrics = {
            "lr": float(used[main][0]),
            "lr_learned": float(self._lrs[self._pair_of[main]].value),
            "wd": float(used[main][1]),
            "hypergrad_lr": float(dlr[self._pair_of[main]]),
            "hypergrad_wd": float(dwd[self._pair_of[main]]),
            "hyper_applied": 1.0 if grads is not None else 0.0,
            "hyper_skipped": float(self.skipped),
        }
        if self.config.per_group:
            for i, g in enumerate(self._groups):
                name = g["name"]
                metrics |= {
                    f"lr/{name}": float(used[i][0]),
                    f"wd/{name}": float(used[i][1]),
                    f"hypergrad_lr/{name}": float(dlr[i]),
                    f"hypergrad_wd/{name}": float(dwd[i]),
                }
        return metrics

    # ------------------------------------------------------------------ state
    def hyperparameters(self) -> dict[str, float]:
        """Current lr and wd of the first non-empty decaying group (else the first non-empty one)."""
        self._require_attached()
        g = self._groups[self._primary()]
        return {"lr": float(g["lr"]), "wd": float(g["weight_decay"])}

    def state_dict(self) -> dict[str, Any]:
        """Weight-optimizer buffers, learned values and their momentum, counters, and the
        pending ``next_train`` directions (so a resumed run applies the same hypergradient)."""
        weights = self._require_attached()
        pending = None
        if self._pending is not None:
            pending = [
                {"indices": list(r.indices), "directions": list(r.directions), "lr": r.lr, "factor": r.factor}
                for r in self._pending
            ]
        return {
            "weights": weights.state_dict(),
            "lrs": [x.state_dict() for x in self._lrs],
            "wds": [None if x is None else x.state_dict() for x in self._wds],
            "pending": pending,
            "factor": self.factor,
            "steps": self.steps,
            "hyper_steps": self.hyper_steps,
            "skipped": self.skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` into an optimizer attached to the same groups.

        Raises:
            ValueError: The number of learned pairs differs (``per_group`` changed).
        """
        weights = self._require_attached()
        if len(state["lrs"]) != len(self._lrs) or len(state["wds"]) != len(self._wds):
            raise ValueError(
                f"state has {len(state['lrs'])} learned (lr, wd) pairs, this optimizer {len(self._lrs)}"
            )
        weights.load_state_dict(state["weights"], self._flat)
        for x, s in zip(self._lrs, state["lrs"], strict=True):
            x.load_state_dict(s)
        for x, s in zip(self._wds, state["wds"], strict=True):
            if x is not None and s is not None:
                x.load_state_dict(s)
        self._pending = None
        if state["pending"] is not None:
            self._pending = [
                _Pending(
                    [int(i) for i in r["indices"]],
                    [d.to(self._flat[int(i)]) for i, d in zip(r["indices"], r["directions"], strict=True)],
                    float(r["lr"]),
                    float(r.get("factor", 1.0)),
                )
                for r in state["pending"]
            ]
        self.steps = int(state["steps"])
        self.hyper_steps = int(state["hyper_steps"])
        self.skipped = int(state["skipped"])
        self.factor = float(state.get("factor", 1.0))
        self._sync_groups()

    def report(self) -> dict[str, Any]:
        """Final values (overall and per group), the mode, and the hyper-step counters."""
        self._require_attached()
        return {
            "final": self.hyperparameters(),
            "learned_lr": [x.value for x in self._lrs],
            "decay": self.config.decay,
            "per_group": {g["name"]: {"lr": float(g["lr"]), "wd": float(g["weight_decay"])} for g in self._groups},
            "hyper_batch": self.hyper_batch,
            "steps": self.steps,
            "hyper_steps": self.hyper_steps,
            "hyper_skipped": self.skipped,
        }


def create_hypergrad(config: HypergradHPOConfig) -> HypergradHyperOptimizer:
    """Online closed-form hypergradient on lr and weight decay (DHA)."""
    return HypergradHyperOptimizer(config)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("hpo", "hypergrad", create_hypergrad, config=HypergradHPOConfig)
