"""Named seed streams: every random source of a run derives its seed from ``train.seed`` here.

A stage's seed is ``train.seed + StageSeed.<stage>``; its random sources are that seed plus
a per-source offset. The offsets are distinct primes so the streams never coincide; their
values are part of a run's reproducibility (changing one changes every result).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["StageSeed", "StreamOffset", "StageSeeds"]


class StageSeed(IntEnum):
    """Offset of a stage's seed from ``train.seed``."""

    SEARCH = 0
    CHILD = 1000
    """Retrain and finetune stages (a fresh stream, unrelated to the search's batches)."""


class StreamOffset(IntEnum):
    """Offset of one random source from its stage's seed."""

    TRAIN_BATCHES = 0
    VAL_BATCHES = 7919
    POLICY = 104729
    """The policy's sampling generator (the batch-level draw in a distributed run)."""
    RANK_SAMPLES = 130363
    """Per-rank, per-step sample generators of a distributed run."""
    BN_RECALIBRATION = 15485863
    """The clean training batches of batch-norm recalibration (from ``train.seed``)."""


@dataclass(frozen=True)
class StageSeeds:
    """The seeds of one stage's random sources.

    Attributes:
        stage: The stage's seed (``train.seed`` plus its :class:`StageSeed`).
    """

    stage: int

    @classmethod
    def of(cls, run_seed: int, stage: StageSeed) -> StageSeeds:
        return cls(run_seed + int(stage))

    @property
    def train_batches(self) -> int:
        return self.stage + StreamOffset.TRAIN_BATCHES

    @property
    def val_batches(self) -> int:
        return self.stage + StreamOffset.VAL_BATCHES

    @property
    def policy(self) -> int:
        return self.stage + StreamOffset.POLICY

    @property
    def rank_samples(self) -> int:
        return self.stage + StreamOffset.RANK_SAMPLES
