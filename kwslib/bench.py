"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.bench`` runs ``python -m kwslib.study.bench``."""
import sys

from .study.bench import main

if __name__ == "__main__":
    sys.exit(main())
