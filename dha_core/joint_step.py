"""One DHA iteration (the joint step, ``docs/architecture.md``), written only against the interfaces.

Order within a step, and the batch each update uses:

0. Bilevel relaxations only: architecture step on a validation batch (before the weights move).
1. Augment the training batch (policy sampling on the training device).
2. Forward the supernet under the relaxation's mixing weights; per-sample losses ``L_i``.
3. Policy step on ``tau`` from ``L_i`` (detached).
4. ``mean(L_i).backward()`` (+ auxiliary loss); clip the weight gradients. Single-level
   relaxations take their architecture step from this same backward.
5. + 6. The hyper-optimizer's weight step, then its hyper step on a held-out batch or on the
   next training gradient.

In a distributed search (a :class:`~dha_core.distributed.DistContext` is given) the same
step runs on every rank with that rank's shard of the batch: the training forward goes
through DDP, the searched parameters' gradients and the held-out gradient are averaged
across ranks, and the loss that decides whether a step is skipped is the global one, so
every rank takes the same decisions (see :mod:`dha_core.distributed`).

Precision, memory format and compile come from a :class:`~dha_core.precision.RunPerformance`
(``perf``): only the network's forward runs under autocast (the training forward and the
held-out hypergradient's), the mixing weights are computed before autocast is entered and
the losses are taken on float32 logits. Under fp16 a ``GradScaler`` scales the training
loss (and the held-out one); a step whose scaled gradients overflow is skipped and the
scale backs off, which is not counted as a non-finite step.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from dha_core.errors import NonFiniteError
from dha_core.interfaces import ArchRelaxation, ArchStepContext, AugmentationPolicy, HyperOptimizer
from dha_core.precision import RunPerformance, ScaledParams

if TYPE_CHECKING:
    from dha_core.distributed import DistContext

__all__ = ["JointStep", "JointStepSettings", "StepOutcome", "prefixed_metrics", "split_output"]

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class StepOutcome:
    """Metrics of one step; ``skipped`` when the loss or gradients were non-finite."""

    metrics: dict[str, float]
    skipped: bool = False


def split_output(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``logits`` or ``(logits, aux_logits)`` -> ``(logits, aux or None)``."""
    if isinstance(out, tuple):
        return out[0], out[1]
    return out, None


@dataclass(frozen=True)
class JointStepSettings:
    """Everything the joint step uses besides the four components.

    Attributes:
        normalize: Maps ``[0, 1]`` images to the network's input.
        device: Training device.
        next_val_batch: Draws a clean validation batch (for bilevel and held-out updates).
        grad_clip: Max global norm of weight gradients, or None.
        aux_weight: Weight of the auxiliary head's loss.
        max_nonfinite: Consecutive non-finite steps tolerated before raising.
        generator: Seeded generator for the policy's sampling. In a distributed search it
            is the same on every rank and drives only the policy's batch-level draw
            (:attr:`~dha_core.interfaces.AugmentationPolicy.batch_generator`); the
            per-sample draws use a generator seeded from ``(sample_seed, rank, step)``.
        dist: The distributed context, or None for a single process.
        sample_seed: Seed of the per-rank sample generator (distributed only).
        perf: Precision, memory format and compile settings; None: fp32, contiguous,
            eager (the network must already be in ``perf``'s memory format).
    """

    normalize: Callable[[torch.Tensor], torch.Tensor]
    device: torch.device
    next_val_batch: Callable[[], Batch]
    grad_clip: float | None
    aux_weight: float
    max_nonfinite: int
    generator: torch.Generator | None
    dist: DistContext | None = None
    sample_seed: int = 0
    perf: RunPerformance | None = None


class JointStep:
    """Runs the joint step for one set of components.

    Args:
        net: The supernet (``forward(x, weights)``).
        relax: Architecture relaxation.
        aug: Augmentation policy.
        hpo: Hyper-optimizer, already attached to ``net``'s weights.
        settings: The rest (:class:`JointStepSettings`).
    """

    def __init__(self, net: nn.Module, relax: ArchRelaxation, aug: AugmentationPolicy, hpo: HyperOptimizer,
                 settings: JointStepSettings) -> None:
        self.net = net
        self.relax = relax
        self.aug = aug
        self.hpo = hpo
        self.settings = settings
        self.normalize = settings.normalize
        self.device = settings.device
        self.next_val_batch = settings.next_val_batch
        self.grad_clip = settings.grad_clip
        self.aux_weight = settings.aux_weight
        self.max_nonfinite = settings.max_nonfinite
        self.generator = settings.generator
        self.weights: list[torch.Tensor] = [p for g in hpo.param_groups for p in g["params"]]
        self.nonfinite_total = 0
        self.nonfinite_run = 0
        self.scaler_skipped = 0
        self.dist = settings.dist
        self.sample_seed = settings.sample_seed
        self.perf = settings.perf if settings.perf is not None else RunPerformance(settings.device)
        self.scaler = self.perf.grad_scaler()
        self._scaled = ScaledParams([*self.weights, *relax.arch_parameters()])
        # The module whose forward the training step and the hyper forward call (compiled
        # or not); ``net`` itself stays the uncompiled module (state dicts, derive, eval).
        self.hyper_net: nn.Module = self.perf.compile_module(net)
        self.forward_net: nn.Module = self.hyper_net
        dist = settings.dist
        if dist is not None:
            self.forward_net = dist.wrap(self.hyper_net)
            # Plugins take their own optimizer steps on these: average each gradient as
            # autograd produces it, so that every rank steps identically (the hooks live
            # as long as the parameters).
            dist.average_grads_of([*relax.arch_parameters(), *aug.parameters()])
            self._sample_generator = dist.sample_generator()
            aug.batch_generator = settings.generator

    def _to_device(self, batch: Batch) -> Batch:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def mean_loss(self, batch: Batch, *, low_precision: bool = True) -> torch.Tensor:
        """Mean cross-entropy of the supernet on a clean batch under the current weights.

        Args:
            batch: ``(images in [0, 1], labels)``.
            low_precision: Run the network's forward under the configured autocast
                (False: float32 whatever the setting, for architecture steps).
        """
        x, y = self._to_device(batch)
        x = self.perf.prepare_input(self.normalize(x))
        weights = self.relax.mixing_weights()
        if not low_precision:
            return F.cross_entropy(split_output(self.net(x, weights))[0].float(), y)
        with self.perf.autocast():
            out = self.hyper_net(x, weights)
        return F.cross_entropy(split_output(out)[0].float(), y)

    def _full_precision_loss(self, batch: Batch) -> torch.Tensor:
        return self.mean_loss(batch, low_precision=False)

    def _hyper_grad(self) -> Sequence[torch.Tensor | None]:
        loss = self.mean_loss(self.next_val_batch())
        if self.scaler is None:
            grads = torch.autograd.grad(loss, self.weights, allow_unused=True)
        else:  # fp16: scale so that small gradients do not flush to zero, then unscale
            scale = self.scaler.get_scale()
            scaled = torch.autograd.grad(loss * scale, self.weights, allow_unused=True)
            grads = tuple(None if g is None else g / scale for g in scaled)
        if self.dist is not None:
            # The gradient of the global held-out batch: the same h, hence lr/wd, on all ranks.
            return self.dist.average(grads)
        return grads

    def _aug_generator(self, step: int) -> torch.Generator | None:
        if self.dist is None:
            return self.generator
        return self._sample_generator(self.sample_seed, step)

    def _arch_context(self, train_batch: Batch | None, val_batch: Batch | None, step: int) -> ArchStepContext:
        hyper = self.hpo.hyperparameters()
        return ArchStepContext(
            loss=self._full_precision_loss,
            weight_params=self.weights,
            weight_lr=float(hyper["lr"]),
            weight_momentum=float(self.hpo.momentum),
            weight_decay=float(hyper.get("wd", 0.0)),
            train_batch=train_batch,
            val_batch=val_batch,
            step=step,
            supernet=self.net,
            # Only the bilevel (DARTS unrolled) step reads them: skip the lookup otherwise.
            momentum_buffers=self.hpo.momentum_buffers(self.weights) if self.relax.bilevel else None,
        )

    def __call__(self, batch: Batch, step: int) -> StepOutcome:
        metrics: dict[str, float] = {}
        self.net.train()
        self.relax.zero_grad(set_to_none=True)

        if self.relax.bilevel and self.relax.arch_parameters():
            ctx = self._arch_context(batch, self.next_val_batch(), step)
            metrics.update(prefixed_metrics("arch", self.relax.arch_step(ctx)))
            self.relax.zero_grad(set_to_none=True)

        self.hpo.zero_grad()
        x, y = self._to_device(batch)
        x_aug, plan = self.aug(x, generator=self._aug_generator(step))
        x_in = self.perf.prepare_input(self.normalize(x_aug))
        weights = self.relax.mixing_weights()  # full precision: outside autocast
        with self.perf.autocast():
            out = self.forward_net(x_in, weights)
        logits, aux = split_output(out)
        logits = logits.float()  # a no-op under fp32
        per_sample = F.cross_entropy(logits, y, reduction="none")
        loss = per_sample.mean()
        if aux is not None and self.aux_weight > 0:
            loss = loss + self.aux_weight * F.cross_entropy(aux.float(), y)
        with torch.no_grad():
            acc_t = (logits.argmax(1) == y).float().mean()
        loss_t = loss.detach()
        if self.dist is not None:
            # The global loss decides a skip, so that no rank enters the backward alone.
            loss_t, acc_t = self.dist.average([loss_t, acc_t])  # type: ignore[misc]
        if not torch.isfinite(loss_t):
            return self._skip("loss", metrics)

        if self.aug.learnable:
            metrics.update(prefixed_metrics("policy", self.aug.policy_step(per_sample.detach(), plan)))

        if self.scaler is None:
            loss.backward()
        else:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self._scaled)  # type: ignore[arg-type]  # weights and arch parameters
        grad_norm = _clip(self.weights, self.grad_clip)
        if not math.isfinite(grad_norm):
            self.hpo.zero_grad()
            if self.scaler is not None:
                return self._scaler_skip(metrics)
            return self._skip("gradient", metrics)

        if not self.relax.bilevel and self.relax.arch_parameters():
            metrics.update(prefixed_metrics("arch", self.relax.arch_step(self._arch_context(batch, None, step))))

        metrics.update(self.hpo.step(self._hyper_grad))
        if self.scaler is not None:
            self.scaler.update()
            metrics["grad_scale"] = float(self.scaler.get_scale())
        self.nonfinite_run = 0
        metrics.update({"loss": loss_t.item(), "acc": acc_t.item(), "grad_norm": grad_norm})  # type: ignore[union-attr]
        return StepOutcome(metrics)

    def _scaler_skip(self, metrics: dict[str, float]) -> StepOutcome:
        """fp16: the scaled gradients overflowed. The scale backs off and the step is skipped,
        as ``GradScaler.step`` would; this is routine, not a non-finite error."""
        assert self.scaler is not None
        self.scaler.update()
        self.scaler_skipped += 1
        log.debug("fp16 gradients overflowed: step skipped, loss scale now %g", self.scaler.get_scale())
        metrics.update({"skipped": 1.0, "scaler_skipped": 1.0, "grad_scale": float(self.scaler.get_scale())})
        return StepOutcome(metrics, skipped=True)

    def _skip(self, what: str, metrics: dict[str, float]) -> StepOutcome:
        self.nonfinite_total += 1
        self.nonfinite_run += 1
        log.warning("non-finite %s: step skipped (%d in a row, %d in total)", what, self.nonfinite_run,
                    self.nonfinite_total)
        if self.nonfinite_run >= self.max_nonfinite:
            raise NonFiniteError(f"{self.nonfinite_run} consecutive non-finite steps (last: {what}); "
                                 "stopping. The last good checkpoint is kept.")
        metrics["skipped"] = 1.0
        return StepOutcome(metrics, skipped=True)


def prefixed_metrics(prefix: str, metrics: dict[str, Any]) -> dict[str, float]:
    """The numeric entries of ``metrics`` (bools excluded) as ``prefix/key`` floats."""
    return {f"{prefix}/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _clip(params: Sequence[torch.Tensor], max_norm: float | None) -> float:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    if max_norm is None:
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in grads]))
        return float(norm)
    return float(torch.nn.utils.clip_grad_norm_(grads, max_norm))
