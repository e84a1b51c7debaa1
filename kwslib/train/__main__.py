"""``python -m kwslib.train`` (and ``torchrun ... -m kwslib.train``): the float-training command line.

An entry point, not library code: the command builds its config with the study's glue, so it lives in
:mod:`kwslib.study.train_cli`, which imports this package (the loop), never the reverse.
"""
import sys

from ..study.train_cli import main

if __name__ == "__main__":
    sys.exit(main())
