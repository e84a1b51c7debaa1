"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.replicates`` runs ``python -m kwslib.study.replicates``."""
import sys

from .study.replicates import main

if __name__ == "__main__":
    sys.exit(main())
