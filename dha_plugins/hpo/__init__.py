"""Built-in hyper-optimizers (``hpo`` components).

Modules:
    weight_update: The SGD / AdamW weight-update core both plugins share.
    fixed: ``hpo=fixed``, scheduled lr and constant wd (DARTS baseline).
    hypergrad: ``hpo=hypergrad``, online closed-form hypergradient on lr and wd.
"""
