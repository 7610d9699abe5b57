"""``relax=ista``: ISTA-NAS one-stage sparse coding (Yang et al., 2020), as used by DHA.

Per choice group (a DARTS node, a MobileNet block) the relaxation keeps

* a fixed, seeded random measurement matrix ``A`` (``m x n``, ``n`` = edges x ops), held as
  a buffer so that checkpoints carry it;
* a learnable code ``b`` in R^m;
* the last recovered sparse vector ``x`` and its support ``S`` (``s`` entries).

The mixing weights are ``alpha_S = A_S^T b - (A_S^T A_S - I) x_S`` on ``S`` and zero
elsewhere (:func:`~dha_plugins.relax.sparse_code.sparse_code_weights`); only ``S`` is
computed. The relaxation is single level: the training loss's backward reaches ``b``
through this affine map and :meth:`IstaRelaxation.arch_step` takes one Adam step on it.

Recovery (each epoch end, or every ``recover_every`` arch steps) solves the LASSO
``min_x 1/2||A x - b||^2 + lam||x||_1`` with :func:`~dha_plugins.relax.fista.fista` and
takes the top-``s`` entries as the new support. A node whose ``x`` moved by at most
``freeze_tol`` freezes: its ``b`` stops, its weights are fixed, and, when the supernet
implements ``fold_group``, they are folded into the network (the node then mixes with unit
weights). A recovered architecture that exceeds ``max_params`` / ``max_flops`` is rejected
and the previous one is kept. ``op_caps`` bounds how many supports of a cell may hold an
op (P-DARTS' skip cap; off by default).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from dha_core.budget import cosine_anneal
from dha_core.config_base import ComponentConfig
from dha_core.errors import UserInputError
from dha_core.hookspecs import hookimpl
from dha_core.interfaces import ArchRelaxation, ArchStepContext
from dha_core.types import ChoiceGroup, MixingWeights, SelectedOp, Selection
from dha_plugins.relax.arch_adam import AdamState
from dha_plugins.relax.darts_rule import allowed_ops
from dha_plugins.relax.fista import fista
from dha_plugins.relax.sparse_code import measurement_matrix, sparse_code_weights, top_s_support

__all__ = ["IstaConfig", "IstaNode", "IstaRelaxation", "create_ista"]

log = logging.getLogger(__name__)

AUTO_COST_WEIGHT = 0.1
"""``cost_weight`` of a time-budgeted search when it is not set (docs/relaxations.md, "Cost")."""

AUTO_PROBES_BY_EPOCHS = 1
"""``probes`` of a search bounded by epochs when it is not set; a time-budgeted one gets 0
(docs/relaxations.md, "Probes")."""

_SMOOTH = 1e-8
"""Smoothing of ``|alpha|`` in the cost penalty, so a zero weight still has a gradient."""


class IstaConfig(ComponentConfig):
    """Config of the ISTA-NAS one-stage relaxation (defaults follow the ISTA-NAS code)."""

    sparsity: int | None = Field(
        None, ge=1, description="Active (edge, op) pairs per node, s; null uses the group's keep (2 for DARTS nodes)."
    )
    code_dim: int = Field(7, ge=1, description="Length m of the code b of every node.")
    matrix: Literal["gaussian", "uniform"] = Field("gaussian", description="Distribution of A's entries.")
    lam: float = Field(1e-5, ge=0, description="L1 weight of the recovery LASSO.")
    # ISTA mixes with alpha itself (no softmax), so alpha ~ b must not start tiny: with
    # DARTS' 1e-3 every node output is scaled by ~1e-3 and the supernet does not learn in a
    # short search (loss stuck at ln(10) on the quickstart). At 1.0 with Adam steps of 3e-4
    # the support never changed in a run; 0.3 with steps of 0.05 decayed by a cosine over
    # the search moves it within a hundred steps and lets it settle (planted-task
    # measurements in docs/relaxations.md, "Defaults").
    init_std: float = Field(0.3, ge=0, description="b ~ init_std * N(0, 1).")
    lr: float = Field(0.05, gt=0, description="Adam learning rate of b.")
    lr_decay: Literal["none", "cosine"] = Field(
        "cosine",
        description="cosine: b's learning rate follows a cosine from lr to 0 over the search stage's progress "
        "(steps or time budget), so the code explores early and settles late.",
    )
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(1e-3, ge=0, description="L2 on b.")
    recover_every: int | None = Field(
        10, ge=1, description="Recover every k arch steps (and fold what froze); null: at each epoch end only."
    )
    freeze_tol: float | None = Field(1e-3, ge=0, description="Freeze a node when ||x_new - x_old|| <= tol; null never.")
    freeze_warmup: int = Field(0, ge=0, description="Recoveries before freezing may start.")
    fold: bool = Field(True, description="Fold a frozen node's weights into the supernet when it supports it.")
    early_stop: bool = Field(False, description="should_stop() once every node is frozen.")
    max_params: float | None = Field(None, gt=0, description="Reject recovered architectures above this many params.")
    max_flops: float | None = Field(None, gt=0, description="Reject recovered architectures above this many FLOPs.")
    cost_weight: float | None = Field(
        None,
        ge=0,
        description="Weight of a cost penalty on the sparse code: cost_weight * sum over unfrozen nodes of the "
        "cost-weighted share sum c_i |alpha_i| / sum |alpha_i| over the node's candidates, with c_i the "
        "candidate's cost (cost_metric) divided by the dearest one of its node. It moves weight from dear ops to "
        "cheap ones, so recovery swaps them unless the training loss needs them. 0: cost-blind, as ISTA-NAS. "
        f"null: {AUTO_COST_WEIGHT} when the search is bounded by a time budget alone (a cheaper cell trains more "
        "steps in it), else 0; with null, a space that gives no costs is searched cost-blind.",
    )
    cost_metric: Literal["latency", "flops", "params"] = Field(
        "latency",
        description="Cost of a candidate for cost_weight: latency (a training forward and backward pass, timed "
        "by the space at setup), flops or params.",
    )
    distinct_edges: bool = Field(False, description="At most one op per edge in the support (DARTS genotype form).")
    op_caps: dict[str, Annotated[int, Field(ge=0)]] = Field(
        default_factory=dict,
        description="At most this many supports of a cell may hold the named op, e.g. {skip_connect: 2} as P-DARTS "
        "caps skip connections; a cell is the groups that share a name up to the last '/' (normal/node0..3). Over "
        "a cap, the op entries with the smallest |x| give way to their node's next-best candidate; ops a space does "
        "not have are ignored. Default {}: no caps (ISTA-NAS); the P-DARTS cap showed no gain at 480 s on the CPU "
        "benchmark (docs/relaxations.md, \"Op caps\").",
    )
    probes: int | None = Field(
        None,
        ge=0,
        description="Candidates outside the support probed per node and training step: computed with a weight "
        "whose value is 0 and whose gradient reaches b (the first-order effect of adding them), so the code can "
        "move towards ops the support does not hold yet. 0: ISTA-NAS's one-stage search exactly. "
        f"null: {AUTO_PROBES_BY_EPOCHS} when the search is bounded by epochs, 0 when it is bounded by a time "
        "budget alone (a probe makes a search step about twice as dear, and under a budget the steps it costs "
        "outweigh what it finds).",
    )
    fista_max_iter: int = Field(20000, ge=1)
    fista_tol: float = Field(1e-12, gt=0)
    seed: int | None = Field(None, ge=0, description="Seed of A and of b's initialisation; null: the run's train.seed.")


class IstaNode(nn.Module):
    """The sparse-coding state of one choice group.

    Args:
        group: The choice group.
        A: Its ``(m, n)`` measurement matrix.
        b: Initial code ``(m,)``.
        sparsity: Support size ``s``.
    """

    def __init__(self, group: ChoiceGroup, A: torch.Tensor, b: torch.Tensor, sparsity: int) -> None:
        super().__init__()
        self.group = group
        self.sparsity = sparsity
        self.register_buffer("A", A)
        self.b = nn.Parameter(b)
        self.register_buffer("x", torch.zeros(A.shape[1], dtype=A.dtype))
        self.register_buffer("support", torch.arange(sparsity, dtype=torch.long))
        self.register_buffer("alpha_fixed", torch.zeros(sparsity, dtype=A.dtype))
        self.register_buffer("frozen", torch.zeros((), dtype=torch.bool))
        self.register_buffer("folded", torch.zeros((), dtype=torch.bool))
        self.register_buffer("frozen_at", torch.full((2,), -1, dtype=torch.long))  # (epoch, step)
        # Relative cost of every candidate (cost_weight); a buffer, so a resumed run keeps
        # the costs timed when it started.
        self.register_buffer("cost", torch.zeros(A.shape[1], dtype=A.dtype))
        self.adam = AdamState(self.b)
        allowed = set(allowed_ops(group))
        # Candidates that may enter the support (all but the none op), for probing.
        self.eligible: list[int] = [i for i in range(A.shape[1]) if i % len(group.ops) in allowed]
        # The same as an index tensor that follows the node's device (not checkpointed).
        self.register_buffer("eligible_idx", torch.as_tensor(self.eligible, dtype=torch.long), persistent=False)
        # Python mirrors of the small buffers: read every step, and reading a buffer
        # would synchronise an accelerator.
        self._support: list[int] = list(range(sparsity))
        self._frozen = False
        self._folded = False
        self.register_load_state_dict_post_hook(_sync_node)

    def set_code(self, x: torch.Tensor, support: Sequence[int]) -> None:
        """Stores a recovered ``x`` and its support."""
        with torch.no_grad():
            self.x.copy_(x)
            self.support.copy_(torch.as_tensor(list(support), dtype=torch.long))
        self._support = list(support)

    def alpha(self) -> torch.Tensor:
        """The ``(s,)`` weights of the support: learned, fixed (frozen) or ones (folded)."""
        if self._folded:
            return torch.ones_like(self.alpha_fixed)
        if self._frozen:
            return self.alpha_fixed
        return sparse_code_weights(self.A, self.b, self.x, self.support)

    def dense(self, alpha: torch.Tensor | None = None, probes: Sequence[int] = ()) -> torch.Tensor:
        """The ``(edges, ops)`` weight matrix: ``alpha`` on the support, zero elsewhere.

        Args:
            alpha: Weights of the support (default: :meth:`alpha`).
            probes: Candidates outside the support that get a zero-valued weight whose
                gradient with respect to ``b`` is that of their sparse-code weight.
        """
        alpha = self.alpha() if alpha is None else alpha
        flat = alpha.new_zeros(self.x.shape[0]).index_copy(0, self.support, alpha)
        if probes:
            idx = torch.as_tensor(list(probes), dtype=torch.long, device=self.A.device)
            z = sparse_code_weights(self.A, self.b, self.x, idx)
            flat = flat.index_add(0, idx, z - z.detach())
        return flat.view(self.group.shape)

    def active_pairs(self) -> list[tuple[int, int]]:
        """The support as ``(edge, op)`` pairs."""
        ops = len(self.group.ops)
        return [(i // ops, i % ops) for i in self._support]

    def freeze(self, epoch: int, step: int) -> None:
        """Fixes the current weights and stops ``b``."""
        with torch.no_grad():
            self.alpha_fixed.copy_(sparse_code_weights(self.A, self.b, self.x, self.support))
            self.frozen.fill_(True)
            self.frozen_at.copy_(torch.tensor([epoch, step]))
        self._frozen = True
        self.b.requires_grad_(False)
        self.b.grad = None

    def mark_folded(self) -> None:
        self.folded.fill_(True)
        self._folded = True


def _sync_node(node: nn.Module, incompatible_keys: object) -> None:
    node._support = [int(i) for i in node.support.tolist()]  # type: ignore[attr-defined]
    node._frozen = bool(node.frozen)  # type: ignore[attr-defined]
    node._folded = bool(node.folded)  # type: ignore[attr-defined]
    node.b.requires_grad_(not node._frozen)  # type: ignore[attr-defined]


class IstaRelaxation(ArchRelaxation):
    """ISTA-NAS one-stage: sparse mixing weights from a compressed code per node.

    Args:
        config: An :class:`IstaConfig`.
        seed: The run's seed, used when ``config.seed`` is null.
        epochs: The search stage's epoch limit; None when a time budget alone bounds it,
            which sets the budget-aware defaults of ``cost_weight`` and ``probes``.
    """

    bilevel = False

    def __init__(self, config: IstaConfig, seed: int = 0, epochs: int | None = 0) -> None:
        super().__init__()
        self.config = config
        self.seed = config.seed if config.seed is not None else seed
        # Under a time budget a cheaper search step buys more steps, so the nulls resolve to
        # a latency penalty and no probes there (docs/relaxations.md, "Cost" and "Probes").
        time_budgeted = epochs is None
        self.cost_weight = (config.cost_weight if config.cost_weight is not None
                            else AUTO_COST_WEIGHT if time_budgeted else 0.0)
        self.probes = (config.probes if config.probes is not None
                       else 0 if time_budgeted else AUTO_PROBES_BY_EPOCHS)
        self.groups: list[ChoiceGroup] = []
        self.nodes = nn.ModuleList()
        self.space: Any = None
        self._steps = 0
        self._epochs = 0
        self._lr_factor = 1.0
        self._recoveries = 0
        self._rejections: list[dict[str, Any]] = []

    # ----------------------------------------------------------------- setup
    def setup(self, groups: Sequence[ChoiceGroup], space: Any = None) -> None:
        """Creates ``A`` and ``b`` per group and recovers the initial support.

        Args:
            groups: The space's choice groups (may be empty).
            space: The search space; ``space.selection_cost`` enforces the limits.

        Raises:
            UserInputError: ``sparsity`` is below a group's ``keep``.
        """
        c = self.config
        self.groups = list(groups)
        self.space = space
        gen = torch.Generator().manual_seed(self.seed)
        nodes = []
        for g in self.groups:
            s = c.sparsity if c.sparsity is not None else g.keep
            if s < g.keep:
                raise UserInputError(
                    f"relax.sparsity={s} is below the {g.keep} (edge, op) pairs group {g.name!r} must keep"
                )
            s = min(s, len(g.edges) * len(allowed_ops(g)))
            A = measurement_matrix(c.code_dim, g.size, c.matrix, gen)
            b = c.init_std * torch.randn(c.code_dim, generator=gen)
            nodes.append(IstaNode(g, A, b, s))
        self.nodes = nn.ModuleList(nodes)
        xs = dict(zip((n.group.name for n in self.nodes), self._solve(list(self.nodes)), strict=True))
        supports = self._capped_supports(list(self.nodes), xs)
        for node in self.nodes:
            node.set_code(xs[node.group.name], supports[node.group.name])
        if self.cost_weight > 0 and self.groups:
            self._set_costs(space)
        if (c.max_params or c.max_flops) and self.groups and getattr(space, "selection_cost", None) is None:
            log.warning("ista: max_params/max_flops are set but no space with selection_cost was given; "
                        "the limits are not enforced")

    def _set_costs(self, space: Any) -> None:
        """Stores each candidate's cost relative to the dearest allowed candidate of its node."""
        metric = self.config.cost_metric
        costs = space.candidate_costs(metric) if space is not None else {}
        missing = [n.group.name for n in self.nodes if n.group.name not in costs]
        if missing and self.config.cost_weight is None:
            log.info("ista: the space gives no %s costs; searching cost-blind", metric)
            self.cost_weight = 0.0
            return
        if missing:
            raise UserInputError(f"relax.cost_weight: the search space gives no {metric} cost for group "
                                 f"{missing[0]!r}; set relax.cost_weight: 0 or another relax.cost_metric")
        for node in self.nodes:
            cost = costs[node.group.name].reshape(-1).to(node.cost)
            top = float(cost[node.eligible].max()) if node.eligible else 0.0
            node.cost.copy_(cost / top if top > 0 else torch.zeros_like(cost))

    def _add_cost_gradient(self) -> float:
        """Adds the gradient of the cost penalty to every unfrozen ``b``; returns the penalty.

        The penalty is the cost-weighted share of the sparse-code weights over every allowed
        candidate, ``sum c_i |alpha_i| / sum |alpha_i|``: it moves weight from dear
        candidates to cheap ones without shrinking the code as a whole (an L1 penalty on
        ``alpha`` would only shrink it), and off-support candidates (``alpha_i`` is their
        correlation with the residual) can grow into the support at the next recovery.
        """
        weight = self.cost_weight
        penalties = []
        for node in self.nodes:
            if node._frozen or not node.eligible:
                continue
            b = node.b.detach().requires_grad_(True)
            idx = node.eligible_idx
            magnitude = (sparse_code_weights(node.A, b, node.x, idx).square() + _SMOOTH).sqrt()
            penalty = weight * (node.cost[idx] * magnitude).sum() / magnitude.sum()
            (grad,) = torch.autograd.grad(penalty, b)
            node.b.grad = grad if node.b.grad is None else node.b.grad + grad
            penalties.append(penalty.detach())
        return float(torch.stack(penalties).sum()) if penalties else 0.0  # one device sync per step

    def support_cost(self) -> float:
        """Mean relative cost of the selected candidates (0 cheapest, 1 dearest); needs costs."""
        if not self.nodes:
            return 0.0
        return float(torch.cat([node.cost[node.support] for node in self.nodes]).mean())  # one device sync

    # ----------------------------------------------------------- weights
    def mixing_weights(self) -> MixingWeights:
        values: dict[str, torch.Tensor] = {}
        active: dict[str, list[tuple[int, int]] | None] = {}
        gen = None
        for n in self.nodes:
            probes: list[int] = []
            if self.training and self.probes and not n._frozen:
                if gen is None:  # a function of the step count: the same after a resume
                    gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self._steps)
                probes = self._draw_probes(n, gen)
            values[n.group.name] = n.dense(probes=probes)
            ops = len(n.group.ops)
            active[n.group.name] = n.active_pairs() + [(i // ops, i % ops) for i in probes]
        return MixingWeights(values, active)

    def _draw_probes(self, node: IstaNode, gen: torch.Generator) -> list[int]:
        support = set(node._support)
        pool = [i for i in node.eligible if i not in support]
        if not pool:
            return []
        picks = torch.randperm(len(pool), generator=gen)[: self.probes].tolist()
        return sorted(pool[j] for j in picks)

    def selection(self) -> Selection:
        """The support of every node, with its current weight (1 once folded).

        When ``sparsity`` exceeds a group's ``keep``, the ``keep`` pairs with the largest
        ``|x|`` are selected.
        """
        return self._selection_of({n.group.name: n._support for n in self.nodes},
                                  {n.group.name: n.x for n in self.nodes})

    def _selection_of(self, supports: dict[str, list[int]], xs: dict[str, torch.Tensor]) -> Selection:
        out: Selection = {}
        for node in self.nodes:
            g = node.group
            support = supports[g.name]
            if support == node._support:
                alpha = node.alpha().detach()
            else:  # a candidate support during recovery
                idx = torch.as_tensor(support, dtype=torch.long, device=node.A.device)
                alpha = sparse_code_weights(node.A, node.b.detach(), xs[g.name].to(node.A), idx)
            weights = dict(zip(support, alpha.tolist(), strict=True))
            x = xs[g.name].tolist()
            kept = sorted(sorted(support, key=lambda i: (-abs(x[i]), i))[: g.keep])
            ops = len(g.ops)
            out[g.name] = [SelectedOp(i // ops, i % ops, 1.0 if node._folded else float(weights[i])) for i in kept]
        return out

    # ---------------------------------------------------------- learning
    def arch_step(self, ctx: ArchStepContext) -> dict[str, float]:
        """One Adam step on every unfrozen ``b`` from the gradient the training backward left.

        Recovers every ``recover_every`` steps when configured; a supernet for folding may
        be passed as ``ctx.supernet`` (otherwise folding waits for the next
        :meth:`on_epoch_end`).
        """
        c = self.config
        self._steps += 1
        metrics: dict[str, float] = {}
        if self.cost_weight > 0:
            metrics["ista/cost_penalty"] = self._add_cost_gradient()
            metrics["ista/support_cost"] = self.support_cost()
        for node in self.nodes:
            if node._frozen:
                continue
            if node.b.grad is not None:
                node.adam.step(node.b, node.b.grad, c.lr * self._lr_factor, c.betas, 1e-8, c.weight_decay)
            node.b.grad = None
        metrics["ista/frozen"] = float(sum(n._frozen for n in self.nodes))
        if c.recover_every is not None and self._steps % c.recover_every == 0:
            events = self.recover(epoch=self._epochs, supernet=ctx.supernet)
            metrics.update({k: float(v) for k, v in events.items() if isinstance(v, (int, float))})
        return metrics

    def on_epoch_end(self, epoch: int, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Recovers (unless ``recover_every`` is set) and folds newly frozen nodes.

        Args:
            epoch: The 0-based epoch that just ended.
            supernet: The supernet, for ``fold_group``.

        Returns:
            Recovery events (see :meth:`recover`).
        """
        self._epochs = epoch + 1
        if self.config.recover_every is None:
            return self.recover(epoch=epoch, supernet=supernet)
        return {"ista/folded": self._fold_pending(supernet)}

    def recover(self, epoch: int | None = None, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Solves the LASSO of every unfrozen node, updates supports and freezes.

        Args:
            epoch: Epoch recorded for nodes that freeze now.
            supernet: The supernet, for folding frozen nodes.

        Returns:
            ``ista/rejected`` (0/1), ``ista/max_dist`` (largest ``||x_new - x_old||``),
            ``ista/changed`` (nodes whose support changed), ``ista/frozen`` (frozen nodes),
            ``ista/folded`` (nodes folded now) and ``ista/newly_frozen`` (their names).
        """
        c = self.config
        epoch = self._epochs if epoch is None else epoch
        self._recoveries += 1
        xs = {n.group.name: n.x for n in self.nodes}
        supports = {n.group.name: n._support for n in self.nodes}
        dists: dict[str, float] = {}
        active = [n for n in self.nodes if not n._frozen]
        for node, x in zip(active, self._solve(active), strict=True):
            xs[node.group.name] = x
            dists[node.group.name] = float((x - node.x).norm())
        supports.update(self._capped_supports(active, xs))
        events: dict[str, Any] = {"ista/rejected": 0, "ista/max_dist": max(dists.values(), default=0.0)}
        violation = self._violation(self._selection_of(supports, xs))
        if violation is not None:
            violation.update(epoch=epoch, step=self._steps)
            self._rejections.append(violation)
            log.warning("ista: rejected the architecture recovered at epoch %d (step %d): %s %.6g > limit %.6g; "
                        "keeping the previous one", epoch, self._steps, violation["metric"], violation["cost"],
                        violation["limit"])
            events["ista/rejected"] = 1
            events["ista/folded"] = self._fold_pending(supernet)
            events["ista/frozen"] = sum(n._frozen for n in self.nodes)
            return events
        newly_frozen = []
        changed = 0
        may_freeze = c.freeze_tol is not None and self._recoveries > c.freeze_warmup
        for node in self.nodes:
            name = node.group.name
            if node._frozen:
                continue
            changed += supports[name] != node._support
            node.set_code(xs[name], supports[name])
            if may_freeze and dists[name] <= c.freeze_tol:  # type: ignore[operator]
                node.freeze(epoch, self._steps)
                newly_frozen.append(name)
                log.info("ista: node %s froze at epoch %d (step %d), ||dx|| = %.3g", name, epoch, self._steps,
                         dists[name])
        events.update({
            "ista/changed": changed,
            "ista/frozen": sum(n._frozen for n in self.nodes),
            "ista/folded": self._fold_pending(supernet),
            "ista/newly_frozen": newly_frozen,
        })
        return events

    def _solve(self, nodes: Sequence[IstaNode]) -> list[torch.Tensor]:
        """Recovers ``x`` for ``nodes`` in one batched FISTA call.

        Nodes with fewer candidates are padded with zero columns of ``A``, whose entries
        of ``x`` stay zero, so one call solves every node exactly as separate calls would.
        """
        if not nodes:
            return []
        c = self.config
        n_max = max(node.x.numel() for node in nodes)
        A = torch.stack([F.pad(node.A.detach(), (0, n_max - node.x.numel())) for node in nodes])
        b = torch.stack([node.b.detach() for node in nodes])
        x0 = torch.stack([F.pad(node.x, (0, n_max - node.x.numel())) for node in nodes])
        res = fista(A, b, c.lam, x0=x0, max_iter=c.fista_max_iter, tol=c.fista_tol)
        if not res.converged:
            log.warning("ista: FISTA did not converge in %d iterations; using the last iterate", res.iterations)
        return [res.x[i, : node.x.numel()].to(node.x) for i, node in enumerate(nodes)]

    def _support_of(self, node: IstaNode, x: torch.Tensor, excluded: Collection[int] = ()) -> list[int]:
        return top_s_support(x, node.sparsity, len(node.group.ops), allowed_ops(node.group), self.config.distinct_edges,
                             excluded)

    def _capped_supports(self, active: Sequence[IstaNode], xs: dict[str, torch.Tensor]) -> dict[str, list[int]]:
        """The top-``s`` supports of ``active`` nodes, within ``op_caps`` per cell.

        While a cell holds more of a capped op than its cap, the entry of that op with the
        smallest ``|x|`` among the active nodes is excluded and its node's support is taken
        again; the caps are applied again until none moves an entry, since the entry that
        replaces an evicted one may be another capped op. The other (frozen) nodes' supports
        count but do not change.

        Args:
            active: Nodes whose support is chosen now.
            xs: Group name -> ``x`` of every node (just recovered for the active ones).

        Returns:
            Group name -> support, for the active nodes.
        """
        out = {n.group.name: self._support_of(n, xs[n.group.name]) for n in active}
        if not self.config.op_caps:
            return out
        cells: dict[str, list[IstaNode]] = {}
        for node in self.nodes:
            cells.setdefault(node.group.name.rpartition("/")[0], []).append(node)
        excluded: dict[str, set[int]] = {name: set() for name in out}
        # Until no cap moves anything: evicting one capped op can bring in another whose cap
        # was met before. Each move excludes one more candidate, so this ends.
        while True:
            before = {name: list(support) for name, support in out.items()}
            for op, cap in self.config.op_caps.items():
                for members in cells.values():
                    self._cap_cell(op, cap, members, xs, out, excluded)
            if out == before:
                return out

    def _cap_cell(self, op: str, cap: int, members: Sequence[IstaNode], xs: dict[str, torch.Tensor],
                  out: dict[str, list[int]], excluded: dict[str, set[int]]) -> None:
        """Evicts ``op`` from the active supports in ``out`` of one cell until it holds ``cap``."""
        stuck: set[tuple[str, int]] = set()
        while True:
            held = []  # (|x|, group, flat index) of the op in the cell's supports
            for node in members:
                name, ops = node.group.name, node.group.ops
                support = out.get(name, node._support)
                held += [(abs(float(xs[name][i])), name, i) for i in support if ops[i % len(ops)] == op]
            movable = [h for h in held if h[1] in out and (h[1], h[2]) not in stuck]
            if len(held) <= cap or not movable:
                return
            _, name, i = min(movable)
            node = next(n for n in members if n.group.name == name)
            support = self._support_of(node, xs[name], excluded[name] | {i})
            if len(support) < node.sparsity:  # no other candidate can take its place
                stuck.add((name, i))
                continue
            excluded[name].add(i)
            out[name] = support

    def _violation(self, selection: Selection) -> dict[str, Any] | None:
        c = self.config
        cost_fn = getattr(self.space, "selection_cost", None)
        if cost_fn is None or not self.groups:
            return None
        for metric, limit in (("params", c.max_params), ("flops", c.max_flops)):
            if limit is None:
                continue
            cost = float(cost_fn(selection, metric))
            if cost > limit:
                return {"metric": metric, "cost": cost, "limit": float(limit)}
        return None

    def _fold_pending(self, supernet: nn.Module | None) -> int:
        """Folds frozen, unfolded nodes into ``supernet`` where it supports folding."""
        fold = getattr(supernet, "fold_group", None)
        if not self.config.fold or fold is None:
            return 0
        folded = 0
        for node in self.nodes:
            if node._frozen and not node._folded:
                with torch.no_grad():
                    weights = node.dense(node.alpha_fixed)
                if fold(node.group.name, weights):
                    node.mark_folded()
                    folded += 1
        return folded

    # ------------------------------------------------------------ status
    def on_progress(self, fraction: float) -> None:
        """Sets b's learning-rate factor (``lr_decay="cosine"``)."""
        if self.config.lr_decay == "cosine":
            self._lr_factor = cosine_anneal(fraction, 1.0, 0.0)

    def finalize(self, supernet: nn.Module | None = None) -> dict[str, Any]:
        """Freezes every node at its current support and weights, and folds them.

        No recovery runs first: a new support could hold ops that were never trained.

        Returns:
            ``ista/frozen``, ``ista/folded`` and ``ista/finalized`` (nodes frozen now).
        """
        finalized = 0
        for node in self.nodes:
            if not node._frozen:
                node.freeze(self._epochs, self._steps)
                finalized += 1
        if not finalized:
            return {}
        return {"ista/finalized": finalized, "ista/frozen": sum(n._frozen for n in self.nodes),
                "ista/folded": self._fold_pending(supernet)}

    def should_stop(self) -> bool:
        return self.config.early_stop and bool(self.nodes) and all(n._frozen for n in self.nodes)

    def report(self) -> dict[str, Any]:
        """``frozen_at`` (group -> ``{"epoch", "step"}`` or ``None``), ``folded``, ``rejections``."""
        frozen_at: dict[str, dict[str, int] | None] = {}
        for node in self.nodes:
            epoch, step = (int(v) for v in node.frozen_at.tolist())
            frozen_at[node.group.name] = {"epoch": epoch, "step": step} if node._frozen else None
        return {
            "relax": "ista",
            "recoveries": self._recoveries,
            "frozen_at": frozen_at,
            "all_frozen": bool(self.nodes) and all(n._frozen for n in self.nodes),
            "folded": [n.group.name for n in self.nodes if n._folded],
            "rejections": [dict(r) for r in self._rejections],
            "cost_weight": self.cost_weight,
            "probes": self.probes,
            "support_cost": self.support_cost() if self.cost_weight > 0 else None,
        }

    # Counters and the rejection log travel in the state_dict as plain Python data, which
    # ``torch.load(weights_only=True)`` accepts.
    def get_extra_state(self) -> dict[str, Any]:
        return {
            "steps": self._steps,
            "epochs": self._epochs,
            "recoveries": self._recoveries,
            "rejections": [dict(r) for r in self._rejections],
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._steps = int(state["steps"])
        self._epochs = int(state["epochs"])
        self._recoveries = int(state["recoveries"])
        self._rejections = [dict(r) for r in state["rejections"]]


def create_ista(config: IstaConfig, seed: int = 0, epochs: int | None = 0) -> IstaRelaxation:
    """ISTA-NAS one-stage: sparse code b per node, FISTA recovery, freezing, resource limits, cost penalty."""
    return IstaRelaxation(config, seed=seed, epochs=epochs)


@hookimpl
def dha_register(registry: Any) -> None:
    registry.add("relax", "ista", create_ista, config=IstaConfig)
