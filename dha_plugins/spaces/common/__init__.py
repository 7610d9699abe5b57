"""Helpers shared by the built-in search spaces: weight folding and candidate costs."""

from dha_plugins.spaces.common.costs import CandidateRef, measure_candidate_costs
from dha_plugins.spaces.common.fold import fold_scale_into, last_affine_bn

__all__ = ["CandidateRef", "fold_scale_into", "last_affine_bn", "measure_candidate_costs"]
