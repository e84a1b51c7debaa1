"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.report`` runs ``python -m kwslib.study.report``."""
import sys

from .study.report import main

if __name__ == "__main__":
    sys.exit(main())
