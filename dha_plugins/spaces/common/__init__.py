"""Helpers shared by the built-in search spaces: weight folding, candidate costs, mixing weights."""

from dha_plugins.spaces.common.costs import CandidateRef, measure_candidate_costs
from dha_plugins.spaces.common.fold import fold_scale_into, last_affine_bn
from dha_plugins.spaces.common.mixing import group_mixing

__all__ = ["CandidateRef", "fold_scale_into", "group_mixing", "last_affine_bn", "measure_candidate_costs"]
