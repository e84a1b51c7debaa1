"""Training: the seeded loop with atomic checkpoints (``loop``) and data-parallel training (``distributed``).

``python -m kwslib.train`` is the float-training command (``__main__``; its code is
:mod:`kwslib.study.train_cli`, because it builds its config with the study's glue).
"""
