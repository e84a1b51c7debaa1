"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.reproduce`` runs ``python -m kwslib.study.reproduce``."""
import sys

from .study.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
