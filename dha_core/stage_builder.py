"""Assembles a :class:`~dha_core.stage.Stage` from a :class:`~dha_core.stage.StageSpec`.

The builder holds what every stage of a run shares: the dataset with its splits, the
search space, the device and performance settings and, in a distributed run, the
process group. It is created by :meth:`StageBuilder.prepare`, which also builds and checks
the relaxation before anything is written (a bad ``relax=fixed`` genotype fails first).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch

from dha_core import components as comp
from dha_core.budget import Clock, StageBudget
from dha_core.config import RunConfig, stage_epochs
from dha_core.data import BatchStream
from dha_core.distributed import DistContext
from dha_core.fixed_network import FixedNetwork
from dha_core.interfaces import ArchRelaxation, SearchSpace, Supernet
from dha_core.joint_step import JointStep, JointStepSettings, split_output
from dha_core.memory_format import FormatTiming, time_memory_formats
from dha_core.normalize import Normalizer
from dha_core.precision import RunPerformance
from dha_core.seeds import StageSeeds
from dha_core.stage import NoArchitecture, Stage, StageSource, StageSpec
from dha_core.types import Selection

log = logging.getLogger(__name__)

__all__ = ["StageBuilder"]


class StageBuilder:
    """Builds the stages of one run.

    Args:
        config: The validated run config.
        bundle: The dataset with its splits and spec.
        space: The search space.
        device: Training device.
        perf: Precision, memory format and compile settings.
        dist: The distributed context, or None for a single process.
        clock: Time source of the stages' budgets.
        relax: A relaxation already built for the search stage (see :meth:`prepare`).
    """

    def __init__(self, config: RunConfig, bundle: comp.DataBundle, space: SearchSpace, device: torch.device,
                 perf: RunPerformance, dist: DistContext | None = None, clock: Clock = time.perf_counter,
                 relax: ArchRelaxation | None = None) -> None:
        self.config = config
        self.bundle = bundle
        self.space = space
        self.device = device
        self.perf = perf
        self.dist = dist
        self.clock = clock
        self._prepared_relax = relax

    @classmethod
    def prepare(cls, config: RunConfig, device: torch.device, perf: RunPerformance, dist: DistContext | None = None,
                clock: Clock = time.perf_counter) -> StageBuilder:
        """Builds the dataset (all splits) and the space, and checks that the relaxation can
        be set up on it (e.g. that ``relax=fixed``'s genotype exists and fits)."""
        bundle = comp.build_dataset(config)
        space = comp.build_space(config.space, bundle.spec)
        train = config.train
        # Built here so that a bad genotype fails before anything is written; the search
        # stage takes this instance.
        relax = comp.build_relax(config.relax, space, None, epochs=stage_epochs(train.epochs, train.time_budget_s),
                                 seed=train.seed)
        return cls(config, bundle, space, device, perf, dist, clock, relax)

    def normalizer(self) -> Normalizer:
        """Maps ``[0, 1]`` images to the network's input on the training device."""
        spec = self.bundle.spec
        assert spec.mean is not None and spec.std is not None  # build_dataset always sets them
        return Normalizer(spec.mean, spec.std, self.device)

    def build(self, spec: StageSpec, selection: Selection | None = None, supernet: Supernet | None = None) -> Stage:
        """The stage's components, ready to step.

        Args:
            spec: The stage.
            selection: The searched architecture (child stages).
            supernet: The search stage's trained supernet, from which a ``DERIVED_CHILD``
                stage derives its child (None after a resume: the checkpoint restores it).
        """
        if spec.source is StageSource.SUPERNET:
            net: Any = self.space.build_supernet()
            relax = self._prepared_relax
            self._prepared_relax = None
            if relax is None:  # a second search stage from the same preparation
                relax = comp.build_relax(self.config.relax, self.space, net, epochs=spec.epochs,
                                         seed=self.config.train.seed)
        else:
            picks = selection or {}
            if spec.source is StageSource.DERIVED_CHILD and supernet is not None:
                child = self.space.derive(supernet, picks)
            else:
                child = self.space.build_child(picks)
            net = FixedNetwork(child)
            relax = NoArchitecture()
            relax.setup([])
        return self._assemble(spec, net, relax)

    def _assemble(self, spec: StageSpec, net: Any, relax: ArchRelaxation) -> Stage:
        cfg = self.config.train
        net = net.to(self.device)
        relax = relax.to(self.device)
        perf, timing = self._stage_performance(spec, net, relax)
        net = perf.prepare_module(net)
        if self.dist is not None:
            self.dist.broadcast_buffers(relax)
        aug = comp.build_aug(spec.aug, self.bundle.spec).to(self.device)
        hpo = comp.build_hpo(spec.hpo)
        seeds = StageSeeds.of(cfg.seed, spec.seed)
        # Batch sizes are per process: a distributed run's effective batch is world_size times larger.
        stream = BatchStream if self.dist is None else self.dist.stream
        train_stream = stream(self.bundle.dataset.split("train"), cfg.batch_size, seeds.train_batches, cfg.workers,
                              "train")
        hyper_bs = hpo.hyper_batch_size or cfg.batch_size
        val_stream = stream(self.bundle.dataset.split("val"), hyper_bs, seeds.val_batches, cfg.workers, "val")
        steps = train_stream.batches_per_cycle()
        if cfg.max_steps_per_epoch is not None:
            steps = min(steps, cfg.max_steps_per_epoch)
        total_steps = None if spec.epochs is None else spec.epochs * steps
        # 0 planned steps: the budget alone drives schedules (through on_progress).
        hpo.attach(comp.weight_param_groups(net), total_steps=total_steps or 0)
        generator = torch.Generator().manual_seed(seeds.policy)
        settings = JointStepSettings(
            normalize=self.normalizer(), device=self.device, next_val_batch=val_stream.next,
            grad_clip=cfg.grad_clip, aux_weight=cfg.aux_weight, max_nonfinite=cfg.max_nonfinite_steps,
            generator=generator, dist=self.dist, sample_seed=seeds.rank_samples, perf=perf,
        )
        step_fn = JointStep(net, relax, aug, hpo, settings)
        budget = StageBudget(total_steps, spec.time_budget_s, self.clock)
        stage = Stage(spec, net, relax, aug, hpo, steps, train_stream, val_stream, step_fn, generator, budget=budget,
                      perf=perf)
        if timing is not None:
            stage.history["memory_format"] = timing.describe()
        return stage

    def _stage_performance(self, spec: StageSpec, net: Any, relax: ArchRelaxation
                           ) -> tuple[RunPerformance, FormatTiming | None]:
        """The run's throughput settings for one stage, with the memory format timed when
        ``channels_last: auto`` meets a CPU stage bounded by a time budget."""
        if not self.perf.measure_memory_format or spec.time_budget_s is None:
            return self.perf, None
        spec_data = self.bundle.spec
        shape = (self.config.train.batch_size, spec_data.channels, spec_data.image_size, spec_data.image_size)
        with torch.random.fork_rng():
            with torch.no_grad():
                weights = relax.mixing_weights()

            def forward(module: Any, x: torch.Tensor) -> torch.Tensor:
                with self.perf.autocast():
                    return split_output(module(x, weights))[0]

            main = self.dist is None or self.dist.is_main
            timing = time_memory_formats(net, forward, shape) if main else None
        if self.dist is not None:  # DDP's gradient buckets need the same layout on every rank
            timing = self.dist.broadcast(timing)
        assert timing is not None
        log.info("%s: %s memory format (a training pass: %.3fs contiguous, %.3fs channels_last)", spec.name,
                 "channels_last" if timing.channels_last else "contiguous", timing.contiguous_s, timing.channels_last_s)
        return self.perf.with_channels_last(timing.channels_last), timing
