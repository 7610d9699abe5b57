"""Abstract interfaces that plugins implement."""

from dha_core.interfaces.aug import AugmentationPolicy, PairProbabilities
from dha_core.interfaces.dataset import Dataset, deterministic_split
from dha_core.interfaces.hpo import HyperGradFn, HyperOptimizer
from dha_core.interfaces.relax import ArchRelaxation, ArchStepContext
from dha_core.interfaces.space import DataSpec, SearchSpace, Supernet, SupportsDropPath

__all__ = [
    "ArchRelaxation",
    "ArchStepContext",
    "AugmentationPolicy",
    "DataSpec",
    "Dataset",
    "HyperGradFn",
    "HyperOptimizer",
    "PairProbabilities",
    "SearchSpace",
    "Supernet",
    "SupportsDropPath",
    "deterministic_split",
]
