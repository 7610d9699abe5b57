"""DHA's learnable augmentation policy, shared by the ``kornia`` and ``torchvision`` backends.

The policy owns ``tau``: logits over ordered op pairs (an ``n x n`` matrix, ``n = 14`` by
default) or over single ops (a vector of ``n``). With ``p = softmax(tau)`` over all entries,
one step of the joint search (the joint step, steps 1 and 3) is:

1. :meth:`LearnablePolicy.sample_plan`: draw ``q = softmax((log p + Gumbel) / T)`` once per
   batch, then each sample draws its own entry ``k_i ~ q`` and, per op application, a level
   ``m ~ U(0, M)`` and a random sign (signed ops only). The result is an :class:`AugPlan`.
2. :meth:`LearnablePolicy.apply_plan`: the backend applies op1 then op2 of each sample.
3. :meth:`LearnablePolicy.policy_step`: ``L_tau = -mean_i(p_{k_i}(tau) * stopgrad(L_i))``
   and one step of the policy's own SGD optimizer. Its gradient is
   ``-(1/B) sum_i L_i p_{k_i} (e_{k_i} - p)``: pairs that produce a high training loss
   become more likely.

A subclass only implements :meth:`LearnablePolicy.apply_plan`.
"""

from __future__ import annotations

import copy
import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from dha_core.interfaces import AugmentationPolicy
from dha_core.types import DataSpec
from dha_plugins.aug import op_levels
from dha_plugins.aug.fixed_ops import FixedOps, FixedOpsConfig, check_generator

__all__ = ["PolicyConfig", "AugPlan", "LearnablePolicy"]


class PolicyConfig(FixedOpsConfig):
    """Config of DHA's learnable policy (both backends).

    Attributes:
        ops: Op names indexing ``tau``; the 14 of the paper by default, any subset and order
            of those plus ``Invert``.
        policy: ``pair`` (``tau`` is ``n x n``; op1 then op2) or ``single`` (``tau`` has ``n``
            entries; one op per sample).
        magnitude_max: ``M``; levels are drawn from ``U(0, M)`` on the 0-8 level scale.
        temperature: ``T`` of the relaxed matrix ``q = softmax((log p + Gumbel) / T)``.
        baseline: ``batch_mean`` subtracts the batch's mean loss from every ``L_i`` in
            Eq. 2 (a REINFORCE baseline). Pairs are then pushed by how much *more* loss
            they produce than the batch, not by how often the batch happened to draw them:
            without it, the per-batch Gumbel draw of ``q`` (a few pairs take most samples)
            dominates the step. ``none`` is Eq. 2 literally.
        optimizer: ``sgd`` (with ``momentum``/``nesterov``) or ``adam`` (normalised steps:
            an entry moves by about ``lr`` per step whatever the scale of its gradient).
        lr: Learning rate of the policy's optimizer. Under SGD the gradient of an entry
            scales like ``p_k ~ 1/n**2`` (about 5e-5 for 196 pairs), hence a large value.
            Default 0.005 (Adam): a slow drift. At 0.02 the 480-second bench_search run
            collapsed the policy onto Equalize/Solarize pairs (entropy 5.28 -> 1.01) and
            scored 50.0% against 52.7% at 0.005 (entropy 5.27; docs/augmentation.md).
        momentum: SGD momentum.
        nesterov: Nesterov momentum (needs ``momentum > 0``).
        weight_decay: L2 decay of ``tau`` (pulls it towards the uniform policy).
        interpolation: Resampling of the geometric ops. The authors resample with bilinear or
            bicubic (a random choice per op); ``bilinear`` is the batched equivalent used here
            (bicubic is not offered). ``nearest`` reproduces PIL's default pixel for pixel.
        fill: What the geometric ops show where the image moved away: ``mean`` is the
            dataset mean (the authors' ``img_mean`` fill colour), ``zero`` is black.
        strength_warmup: Fraction of the stage over which the policy's strength ``s`` rises
            from 0 (identity) to 1: each drawn level moves towards the op's identity level
            (``level = id + s * (level - id)``, see ``op_levels.IDENTITY_LEVEL``) and ops
            without a magnitude are applied with probability ``s`` (Identity otherwise).
            0 disables the warm-up. Default 0.5: +3 points of test accuracy on the
            100-second quickstart in both seeds measured (docs/augmentation.md).
        strength_max: The strength ``s`` reached at the end of the warm-up (and used when
            no progress is reported). 1 applies the drawn levels as they are. Default 0.25:
            every level is drawn within a quarter of the distance from the op's identity
            and the ops without a magnitude apply a quarter of the time. Against 0.5 (the
            previous default), back to back: 61.76% vs 58.04% on the 480-s bench_search
            DHA row (2 seeds) and 47.8% vs 45.6% on the quickstart (3 seeds); see
            docs/augmentation.md.
        metrics_top_k: Top entries logged by :meth:`LearnablePolicy.policy_step` every step.
        report_top_k: Top entries listed by :meth:`LearnablePolicy.report`.

    The fields of :class:`~dha_plugins.aug.fixed_ops.FixedOpsConfig` (crop, flip, cutout) set
    the fixed ops around the policy. Normalisation is left to the orchestrator.
    """

    # The authors apply the pair policy with no random crop before it (their translate ops
    # already shift the image by up to 45%), so the policy's own crop is off by default.
    crop: bool = False
    ops: list[str] = Field(default_factory=lambda: list(op_levels.DEFAULT_OPS), min_length=1)
    policy: Literal["pair", "single"] = "pair"
    magnitude_max: float = Field(op_levels.MAX_LEVEL, gt=0.0, le=op_levels.MAX_LEVEL)
    temperature: float = Field(0.5, gt=0.0)
    optimizer: Literal["sgd", "adam"] = "adam"
    baseline: Literal["none", "batch_mean"] = "batch_mean"
    lr: float = Field(0.005, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    nesterov: bool = True
    weight_decay: float = Field(0.0, ge=0.0)
    interpolation: Literal["nearest", "bilinear"] = "bilinear"
    fill: Literal["mean", "zero"] = "mean"
    strength_warmup: float = Field(0.5, ge=0.0, le=1.0)
    strength_max: float = Field(0.25, gt=0.0, le=1.0)
    metrics_top_k: int = Field(3, ge=0)
    report_top_k: int = Field(10, ge=1)

    @field_validator("ops")
    @classmethod
    def _known_unique_ops(cls, ops: list[str]) -> list[str]:
        unknown = [o for o in ops if o not in op_levels.ALL_OPS]
        if unknown:
            raise ValueError(f"unknown ops {unknown}; available: {', '.join(op_levels.ALL_OPS)}")
        if len(set(ops)) != len(ops):
            raise ValueError(f"ops must be unique, got {ops}")
        return ops

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> PolicyConfig:
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov=true needs momentum > 0")
        return self


@dataclass(frozen=True)
class AugPlan:
    """What each sample of a batch drew. Tensors live on CPU.

    Attributes:
        index: ``(B,)`` long, the entry ``k_i`` of ``p`` (flattened ``tau``); for pairs,
            ``k = op1 * n + op2``.
        ops: ``(B, L)`` long op indices into ``op_names``, applied left to right
            (``L = 2`` for pairs, 1 for single ops).
        levels: ``(B, L)`` float magnitudes on the 0-8 level scale.
        signs: ``(B, L)`` float, ``+-1`` for signed ops and ``+1`` for the others.
        op_names: The op names the indices refer to.
    """

    index: torch.Tensor
    ops: torch.Tensor
    levels: torch.Tensor
    signs: torch.Tensor
    op_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.index.shape[0])

    @classmethod
    def fixed(
        cls,
        op_names: Sequence[str],
        ops: Sequence[Sequence[str]],
        levels: Sequence[Sequence[float]] | float = 0.0,
        signs: Sequence[Sequence[float]] | float = 1.0,
    ) -> AugPlan:
        """Builds a plan from op names (tests, replays, visualisation).

        Args:
            op_names: The policy's op list.
            ops: Per sample, the op names to apply (all samples the same length).
            levels: Per sample and op, the level; or one level for all.
            signs: Per sample and op, the sign; or one sign for all.

        Returns:
            The plan. ``index`` assumes a pair policy for length-2 rows.
        """
        names = tuple(op_names)
        op_idx = torch.tensor([[names.index(o) for o in row] for row in ops], dtype=torch.long)
        shape = op_idx.shape

        def per_op(value: Sequence[Sequence[float]] | float) -> torch.Tensor:
            if isinstance(value, (int, float)):
                return torch.full(shape, float(value))
            return torch.tensor(value, dtype=torch.float32).reshape(shape)

        index = op_idx[:, 0] * len(names) + op_idx[:, 1] if shape[1] == 2 else op_idx[:, 0]
        return cls(index=index, ops=op_idx, levels=per_op(levels), signs=per_op(signs), op_names=names)

    def describe(self, i: int) -> list[tuple[str, float, float]]:
        """``[(op name, level, sign), ...]`` for sample ``i``."""
        return [
            (self.op_names[int(o)], float(lv), float(s))
            for o, lv, s in zip(self.ops[i], self.levels[i], self.signs[i], strict=True)
        ]


class LearnablePolicy(AugmentationPolicy):
    """The learnable policy; subclasses implement :meth:`apply_plan` for one backend.

    Args:
        config: The policy's config.
        data_spec: Dataset facts (``image_size``, ``mean``); used by the fixed ops.

    Attributes:
        tau: The policy logits (``n x n`` for pairs, ``n`` for single ops), an
            :class:`~torch.nn.Parameter` so it is part of ``state_dict()``.
    """

    learnable = True

    #: Optional generator for the batch-level draw only (the Gumbel noise of ``q``). A
    #: distributed search sets it to a generator seeded alike on every rank, so that all
    #: ranks share ``q`` while the generator passed to :meth:`forward` (seeded per rank)
    #: drives the per-sample draws. ``None`` (the default): one generator drives both.
    batch_generator: torch.Generator | None = None

    def __init__(self, config: PolicyConfig, data_spec: DataSpec | None = None) -> None:
        super().__init__()
        self.config = config
        self.op_names: tuple[str, ...] = tuple(config.ops)
        self.pair = config.policy == "pair"
        n = len(self.op_names)
        # tau starts at zero: the uniform policy.
        self.tau = nn.Parameter(torch.zeros((n, n) if self.pair else (n,)))
        self.fixed_ops = FixedOps.for_data(config, data_spec)
        # A plain CPU tensor, not a buffer: sampling runs on CPU whatever device the module is on.
        self._signed_cpu = torch.tensor([name in op_levels.SIGNED_OPS for name in self.op_names])
        self._identity_level = torch.tensor([op_levels.IDENTITY_LEVEL.get(name, 0.0) for name in self.op_names])
        self._unscaled = torch.tensor([name in op_levels.UNSCALED_OPS for name in self.op_names])
        self.identity_index = self.op_names.index("Identity") if "Identity" in self.op_names else -1
        mean = data_spec.mean if data_spec is not None else None
        self.fill: tuple[float, ...] | None = (
            tuple(float(m) for m in mean) if config.fill == "mean" and mean is not None else None
        )
        self.optimizer: torch.optim.Optimizer
        if config.optimizer == "adam":
            self.optimizer = torch.optim.Adam([self.tau], lr=config.lr, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                [self.tau],
                lr=config.lr,
                momentum=config.momentum,
                nesterov=config.nesterov,
                weight_decay=config.weight_decay,
            )
        # Full strength until the orchestrator reports progress (a policy used on its own
        # applies what it samples); on_progress() sets the warm-up's value before each step.
        self.strength = config.strength_max

    # ------------------------------------------------------------------ policy state

    @property
    def num_ops(self) -> int:
        return len(self.op_names)

    def probabilities(self) -> torch.Tensor:
        """``p = softmax(tau)`` over all entries, in ``tau``'s shape (detached)."""
        with torch.no_grad():
            return torch.softmax(self.tau.flatten().float(), 0).view_as(self.tau)

    def entry_name(self, k: int) -> str:
        """Name of entry ``k`` of the flattened ``tau``, e.g. ``"Rotate+Color"``."""
        if self.pair:
            return f"{self.op_names[k // self.num_ops]}+{self.op_names[k % self.num_ops]}"
        return self.op_names[k]

    def top_entries(self, k: int) -> list[dict[str, Any]]:
        """The ``k`` most likely entries of ``p``, best first.

        Returns:
            ``[{"index": int, "ops": [names...], "prob": float}, ...]``.
        """
        p = self.probabilities().flatten().cpu()
        values, indices = p.topk(min(k, p.numel()))
        return [
            {"index": int(i), "ops": self.entry_name(int(i)).split("+"), "prob": float(v)}
            for v, i in zip(values, indices, strict=True)
        ]

    def entropy(self) -> float:
        """Entropy of ``p`` in nats (``log(n**2)`` for the uniform pair policy)."""
        p = self.probabilities().flatten()
        return float(-(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum())

    def optimizer_state_dict(self) -> dict[str, Any]:
        """State of the policy's SGD optimizer, for checkpoints (``tau`` is in ``state_dict()``)."""
        return self.optimizer.state_dict()

    def load_optimizer_state_dict(self, state: dict[str, Any]) -> None:
        """Restores what :meth:`optimizer_state_dict` returned.

        The state is deep-copied first: ``Optimizer.load_state_dict`` may keep the caller's
        momentum tensors, which would then be shared with (and mutated by) their source.
        """
        self.optimizer.load_state_dict(copy.deepcopy(state))

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample_plan(self, batch_size: int, generator: torch.Generator | None = None) -> AugPlan:
        """Draws every sample's entry, levels and signs (step 1 of the joint step).

        All draws happen on CPU in a fixed order, so a seeded CPU generator reproduces them on
        any device.

        Args:
            batch_size: ``B``.
            generator: CPU generator; ``None`` uses the global RNG. When
                :attr:`batch_generator` is set, it draws ``q`` and ``generator`` only the
                per-sample entries, levels and signs.

        Returns:
            The plan.
        """
        check_generator(generator)
        batch_generator = self.batch_generator if self.batch_generator is not None else generator
        log_p = torch.log_softmax(self.tau.detach().flatten().float(), 0).cpu()
        uniform = torch.rand(log_p.shape, generator=batch_generator).clamp_(min=torch.finfo(torch.float32).tiny)
        gumbel = -torch.log(-torch.log(uniform))
        q = torch.softmax((log_p + gumbel) / self.config.temperature, 0)
        index = torch.multinomial(q, batch_size, replacement=True, generator=generator)
        ops = torch.stack([index // self.num_ops, index % self.num_ops], 1) if self.pair else index[:, None]
        levels = torch.rand(ops.shape, generator=generator) * self.config.magnitude_max
        coin = torch.rand(ops.shape, generator=generator) < 0.5
        signs = torch.where(coin & self._signed_cpu[ops], -1.0, 1.0)
        if self.strength < 1.0:
            ops, levels = self._weaken(ops, levels, generator)
        return AugPlan(index=index, ops=ops, levels=levels, signs=signs, op_names=self.op_names)

    def _weaken(self, ops: torch.Tensor, levels: torch.Tensor,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Moves every application towards the identity by the current strength."""
        s = self.strength
        levels = self._identity_level[ops] + s * (levels - self._identity_level[ops])
        if self.identity_index >= 0:
            skip = self._unscaled[ops] & (torch.rand(ops.shape, generator=generator) >= s)
            ops = torch.where(skip, self.identity_index, ops)
        return ops, levels

    def on_progress(self, fraction: float) -> None:
        """Ramps the strength up to ``strength_max`` over ``strength_warmup`` of the stage."""
        warmup, top = self.config.strength_warmup, self.config.strength_max
        self.strength = top if warmup == 0.0 else top * min(1.0, fraction / warmup)

    @abstractmethod
    def apply_plan(self, images: torch.Tensor, plan: AugPlan) -> torch.Tensor:
        """Applies each sample's ops, left to right (step 1, the backend part).

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``.
            plan: The plan for this batch.

        Returns:
            The augmented batch. Samples whose ops are all ``Identity`` come back unchanged.
        """

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, AugPlan]:
        """Pre-ops, then the sampled policy, then post-ops.

        Args:
            images: ``(B, C, H, W)`` float batch in ``[0, 1]``.
            generator: CPU generator for every random draw.

        Returns:
            ``(augmented, plan)``; pass ``plan`` to :meth:`policy_step`.
        """
        check_generator(generator)
        images = self.fixed_ops.pre(images, generator)
        plan = self.sample_plan(images.shape[0], generator)
        images = self.apply_plan(images, plan)
        return self.fixed_ops.post(images, generator), plan

    # ------------------------------------------------------------------ policy update

    def policy_loss(self, per_sample_loss: torch.Tensor, plan: AugPlan) -> torch.Tensor:
        """``L_tau = -mean_i(p_{k_i}(tau) * stopgrad(L_i))``, differentiable in ``tau``.

        Args:
            per_sample_loss: ``(B,)`` training losses; detached here.
            plan: The plan the losses were computed under.

        Returns:
            The scalar policy loss.
        """
        if per_sample_loss.ndim != 1 or per_sample_loss.shape[0] != len(plan):
            raise ValueError(
                f"per_sample_loss must have shape ({len(plan)},) to match the plan, got {tuple(per_sample_loss.shape)}"
            )
        p = torch.softmax(self.tau.flatten(), 0)
        losses = per_sample_loss.detach().to(device=p.device, dtype=p.dtype)
        if self.config.baseline == "batch_mean":
            losses = losses - losses.mean()
        return -(p[plan.index.to(p.device)] * losses).mean()

    def policy_step(self, per_sample_loss: torch.Tensor, plan: AugPlan) -> dict[str, float]:
        """One SGD step on ``tau`` (step 3 of the joint step).

        Args:
            per_sample_loss: ``(B,)`` training losses ``L_i``.
            plan: What :meth:`forward` returned for this batch.

        Returns:
            ``loss`` (the policy loss), ``entropy`` (nats, after the step) and, for
            ``r = 1..metrics_top_k``, ``top{r}_index`` (entry of the flattened ``tau``; names
            via :meth:`entry_name`) and ``top{r}_prob``. The orchestrator prefixes the keys
            (``policy/entropy``).
        """
        with torch.enable_grad():
            loss = self.policy_loss(per_sample_loss, plan)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        self.optimizer.step()
        with torch.no_grad():
            p = torch.softmax(self.tau.flatten().float(), 0)
            entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum()
            top_p, top_i = p.topk(min(self.config.metrics_top_k, p.numel()))
            # One host transfer for every logged number.
            values = torch.cat([loss.detach().float().view(1), entropy.view(1), top_p, top_i.float()]).tolist()
        k = top_p.numel()
        metrics = {"loss": values[0], "entropy": values[1]}
        for r in range(k):
            metrics[f"top{r + 1}_index"] = values[2 + k + r]
            metrics[f"top{r + 1}_prob"] = values[2 + r]
        return metrics

    def report(self) -> dict[str, Any]:
        """Summary of the learned policy for ``summary.json`` and the ``tau`` heatmap.

        Returns:
            ``policy`` (pair/single), ``ops``, ``entropy`` and ``max_entropy`` (nats), ``top``
            (the ``report_top_k`` most likely entries with names and probabilities) and the
            full probabilities: ``pair_probs`` (``n x n`` nested list, row = op1) for pairs,
            ``op_probs`` for single ops.
        """
        probs = self.probabilities().cpu().tolist()
        return {
            "policy": self.config.policy,
            "ops": list(self.op_names),
            "entropy": self.entropy(),
            "max_entropy": math.log(self.tau.numel()),
            "top": self.top_entries(self.config.report_top_k),
            ("pair_probs" if self.pair else "op_probs"): probs,
        }

    def extra_repr(self) -> str:
        return f"policy={self.config.policy!r}, ops={len(self.op_names)}, T={self.config.temperature}"
