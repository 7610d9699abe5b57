"""Golden outputs of fixed-seed runs: the identity check of structural refactors.

See :mod:`tests.golden.runs` for the runs and :mod:`tests.golden.regen` to rewrite them.
"""
