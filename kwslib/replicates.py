"""Old entry point, kept for commands typed before the package layout changed:
``python -m kwslib.replicates`` runs ``python -m kwslib.study.rerun`` (recompute or compare stored runs)."""
import sys

from .study.rerun import main

if __name__ == "__main__":
    sys.exit(main())
