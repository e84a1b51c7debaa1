"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.tuning`` runs ``python -m kwslib.study.tuning``."""
import sys

from .study.tuning import main

if __name__ == "__main__":
    sys.exit(main())
