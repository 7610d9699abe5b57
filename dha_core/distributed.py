"""One search on several processes: torchrun + DistributedDataParallel.

A search launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) runs the same
joint step on every rank, each on its own shard of the batch. This module holds what the
orchestrator needs for that, so that neither the orchestrator's loop nor the plugins know
about process groups:

* :class:`DistContext`: the process group (NCCL on GPUs, gloo on CPU), rank facts and the
  collectives used by :mod:`dha_core.joint_step` and :mod:`dha_core.searcher`.
* :class:`ShardedBatchStream`: the ``DistributedSampler`` split of a
  :class:`~dha_core.data.BatchStream`: every rank draws its slice of the same global
  batch, so the effective batch is ``per-rank batch x world size``.

How every searched quantity stays identical on all ranks (the invariant the tests check
bitwise):

* network weights: DDP averages their gradients during ``backward()``;
* architecture parameters (``relax.arch_parameters()``) and policy parameters
  (``aug.parameters()``, e.g. ``tau``): a gradient hook averages each gradient across ranks
  the moment autograd computes it, so whatever optimizer step a plugin then takes
  internally (``policy_step``, ``arch_step``, first or second order) sees the same
  gradient on every rank. ISTA's recovery (FISTA), support and freezing decisions are
  deterministic functions of the identical code ``b``;
* lr and wd: the held-out gradient ``h`` is averaged in the orchestrator's closure, and
  the weight-step directions are built from DDP-averaged gradients, so every rank
  computes the same closed-form hypergradient;
* the augmentation policy: all ranks draw the batch-level relaxed matrix ``q`` from one
  generator with the same seed (the policy's optional ``batch_generator``), while the
  per-sample draws use a generator seeded by ``(seed, rank, step)``: each rank
  augments its own samples differently, from the same ``q``.

The searched-parameter hooks run their collectives on a process group of their own, so
they can never interleave with the bucketed all-reduces DDP issues on the default group
during the same backward.

The process group lives as long as the process: a second search in the same torchrun
process reuses it. (Destroying and re-creating the default group in one process reuses
the rendezvous store's keys, which makes gloo connect to the previous group's stale
addresses.) It is destroyed at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset as TorchDataset
from torch.utils.hooks import RemovableHandle

from dha_core.data import BatchStream, epoch_batches
from dha_core.errors import UserInputError

__all__ = [
    "DistContext",
    "ShardedBatchStream",
    "env_world_size",
    "is_main_process",
    "rank_seed",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


def env_world_size() -> int:
    """``WORLD_SIZE`` as set by torchrun (1 when not launched by it)."""
    try:
        return max(int(os.environ.get("WORLD_SIZE", "1")), 1)
    except ValueError:
        return 1


def is_main_process() -> bool:
    """True on rank 0 and in a single-process run (reads the group, else torchrun's env)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def rank_seed(seed: int, rank: int, step: int) -> int:
    """A 63-bit seed for the per-sample draws of ``rank`` at ``step`` (splitmix64 mixing).

    Nearby ``(seed, rank, step)`` triples give unrelated seeds, so the generator streams of
    different ranks and steps do not overlap in any structured way.
    """
    z = (seed * 0x9E3779B97F4A7C15 + rank * 0xBF58476D1CE4E5B9 + step * 0x94D049BB133111EB) & (2**64 - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & (2**64 - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & (2**64 - 1)
    return (z ^ (z >> 31)) & (2**63 - 1)


@dataclass
class DistContext:
    """The process group of a distributed search and the collectives the orchestrator uses.

    Create it with :meth:`start`; it returns ``None`` for a single-process run, and the
    orchestrator then takes its ordinary code paths unchanged.

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this node (selects the GPU).
        device: This rank's training device.
        backend: ``nccl`` or ``gloo``.
        search_group: A separate group for the searched parameters' gradient hooks.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str
    search_group: Any = None

    # ----------------------------------------------------------------- life cycle
    @classmethod
    def start(cls, device: torch.device) -> DistContext | None:
        """Joins the process group torchrun described in the environment.

        Args:
            device: The device from ``train.device``; a CUDA device becomes
                ``cuda:LOCAL_RANK``.

        Returns:
            The context, or ``None`` for a single process (no torchrun, or
            ``--nproc_per_node=1``). A group the caller initialised is used as is.

        Raises:
            UserInputError: torchrun asked for more processes than there are GPUs on
                this node.
        """
        if not (dist.is_available() and dist.is_initialized()):
            if env_world_size() <= 1:
                return None
            if not dist.is_available():
                raise UserInputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if device.type == "cuda":
                if local_rank >= torch.cuda.device_count():
                    raise UserInputError(f"local rank {local_rank} has no GPU: this node has "
                                         f"{torch.cuda.device_count()}; lower --nproc_per_node")
                torch.cuda.set_device(local_rank)
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            atexit.register(_destroy_default_group)
        world = dist.get_world_size()
        if world <= 1:
            return None
        local_rank = int(os.environ.get("LOCAL_RANK", str(dist.get_rank())))
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        ctx = cls(
            rank=dist.get_rank(),
            world_size=world,
            local_rank=local_rank,
            device=device,
            backend=str(dist.get_backend()),
            search_group=_search_group(),
        )
        if ctx.is_main:
            log.info("distributed search: %d processes, backend %s", world, ctx.backend)
        return ctx

    def close(self, wait: bool = True) -> None:
        """Ends this search's use of the group (which stays up for the next search).

        Args:
            wait: Wait for every rank (a barrier), so that none starts its next collective
                work while another is still finishing. Pass False on an error path, where
                another rank may never arrive.
        """
        if wait and dist.is_initialized():
            dist.barrier()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----------------------------------------------------------------- model and data
    def wrap(self, net: nn.Module) -> nn.Module:
        """Wraps the network in DDP for the training forward/backward.

        ``find_unused_parameters`` is on because sparse relaxations (ISTA) compute only
        the active candidates, and the active set moves during the search.
        """
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(net, device_ids=device_ids, find_unused_parameters=True)

    def stream(self, dataset: TorchDataset, batch_size: int, seed: int, workers: int, name: str) -> ShardedBatchStream:
        """This rank's shard of a batch stream (``batch_size`` per rank)."""
        return ShardedBatchStream(dataset, batch_size, seed, workers, name, rank=self.rank,
                                  world_size=self.world_size)

    def sample_generator(self) -> Callable[[int, int], torch.Generator]:
        """A function ``(seed, step) -> generator`` for this rank's per-sample draws.

        The generator is reseeded from ``(seed, rank, step)`` every step, so it carries no
        state a checkpoint would have to hold: a resumed run draws what an uninterrupted
        one would.
        """
        generator = torch.Generator()
        rank = self.rank

        def at(seed: int, step: int) -> torch.Generator:
            return generator.manual_seed(rank_seed(seed, rank, step))

        return at

    # ----------------------------------------------------------------- collectives
    def average_grads_of(self, params: Iterable[torch.Tensor]) -> list[RemovableHandle]:
        """Averages every gradient autograd computes for ``params`` across ranks.

        A tensor hook replaces the gradient before it is accumulated into ``.grad`` or
        returned by ``torch.autograd.grad``, so a plugin's internal optimizer step sees
        the global gradient.

        Returns:
            The hook handles.
        """
        handles = []
        for p in params:
            if p.requires_grad:
                handles.append(p.register_hook(self._average_hook))
        return handles

    def _average_hook(self, grad: torch.Tensor) -> torch.Tensor:
        out = grad.detach().clone()
        dist.all_reduce(out, group=self.search_group)
        return out.div_(self.world_size)

    def average(self, tensors: Sequence[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """The cross-rank mean of each tensor, in one coalesced all-reduce.

        ``None`` entries stay ``None``; they must be ``None`` on every rank (the same
        parameters are unused on all ranks, since the architecture is identical).
        """
        present = [t for t in tensors if t is not None]
        if not present:
            return list(tensors)
        flat = torch.cat([t.detach().reshape(-1).to(present[0].dtype) for t in present])
        dist.all_reduce(flat, group=self.search_group)
        flat.div_(self.world_size)
        out: list[torch.Tensor | None] = []
        offset = 0
        for t in tensors:
            if t is None:
                out.append(None)
                continue
            n = t.numel()
            out.append(flat[offset : offset + n].view_as(t).to(t.dtype))
            offset += n
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on some rank."""
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.search_group)
        return bool(t.item() > 0)

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Copies rank 0's floating-point buffers of ``module`` to every rank (e.g. ISTA's
        timed op costs, which each rank would otherwise measure differently)."""
        for buf in module.buffers():
            if buf.is_floating_point():
                dist.broadcast(buf, src=0, group=self.search_group)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable objects)."""
        box = [obj]
        dist.broadcast_object_list(box, src=0, device=self.device if self.backend == "nccl" else None)
        return box[0]

    def main_first(self, fn: Callable[[], T], others_too: bool = True) -> T | None:
        """Runs ``fn`` on rank 0 first, then (optionally) on the other ranks.

        A :class:`UserInputError` on rank 0 is raised on every rank with the same message,
        so a bad config or output path stops all processes cleanly instead of leaving the
        others waiting in a collective. Rank 0 going first also keeps the ranks from
        racing to unpack or cache the same dataset files.

        Args:
            fn: The work.
            others_too: Run ``fn`` on the other ranks after rank 0 succeeded.

        Returns:
            ``fn()``'s result where it ran, else None.
        """
        result: T | None = None
        error: str | None = None
        raised: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except UserInputError as exc:
                error = str(exc)
                raised = exc
            except BaseException as exc:
                error = f"rank 0 failed: {type(exc).__name__}: {exc}"
                raised = exc
        error = self.broadcast(error)
        if error is not None:
            if raised is not None:
                raise raised
            raise UserInputError(error)
        if not self.is_main and others_too:
            result = fn()
        return result


_SEARCH_GROUPS: dict[int, Any] = {}


def _search_group() -> Any:
    """The process's group for searched-parameter collectives, created once per default group."""
    world = dist.group.WORLD
    key = id(world)
    if key not in _SEARCH_GROUPS:
        _SEARCH_GROUPS.clear()
        _SEARCH_GROUPS[key] = dist.new_group(backend=str(dist.get_backend()))
    return _SEARCH_GROUPS[key]


def _destroy_default_group() -> None:
    if dist.is_available() and dist.is_initialized():
        _SEARCH_GROUPS.clear()
        dist.destroy_process_group()


class ShardedBatchStream(BatchStream):
    """A :class:`~dha_core.data.BatchStream` whose global batch is split across ranks.

    Each cycle draws global batches of ``batch_size * world_size`` indices from the same
    ``(seed, cycle)`` permutation on every rank; rank ``r`` takes positions ``r, r + N, ...``
    of each, as ``DistributedSampler`` does with an epoch's permutation. The union over
    ranks of step ``k``'s batches is exactly step ``k``'s batch of a single process run
    with ``batch_size * world_size``, which is what makes the two runs equivalent.

    The position ``(cycle, index)`` counts global batches, so it is the same on every rank
    and rank 0's checkpoint resumes all of them.

    Args:
        dataset: The split.
        batch_size: Per-rank batch size.
        seed: Shuffling seed (the same on every rank).
        workers: DataLoader workers.
        name: Split name, for messages.
        rank: This process's rank.
        world_size: Number of processes.
    """

    def __init__(self, dataset: TorchDataset, batch_size: int, seed: int, workers: int = 0, name: str = "",
                 *, rank: int, world_size: int) -> None:
        n = len(dataset)
        if 0 < n < world_size:
            raise UserInputError(f"data: the {name or 'requested'} split has {n} samples, fewer than the "
                                 f"{world_size} processes")
        super().__init__(dataset, batch_size, seed, workers, name)
        self.rank = rank
        self.world_size = world_size
        # The global batch must fit in the split; shrink the per-rank batch when it does not.
        self.batch_size = min(self.batch_size, max(n // world_size, 1))

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def batches_per_cycle(self) -> int:
        return max(len(self.dataset) // self.global_batch_size, 1)

    def cycle_batches(self) -> list[list[int]]:
        batches = epoch_batches(len(self.dataset), self.global_batch_size, self.seed, self.cycle)
        return [b[self.rank :: self.world_size] for b in batches]
