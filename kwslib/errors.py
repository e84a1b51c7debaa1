"""Exception types raised by kwslib.

Every error a user can trigger with bad input derives from :class:`KwsError`
and names the file (or parameter) and the problem, so that a failing notebook
cell or command line says exactly what to fix.
"""


class KwsError(Exception):
    """Base class of every error kwslib raises on bad input."""


class AudioError(KwsError, ValueError):
    """A WAV file or audio array that kwslib cannot use (corrupt, wrong rate, stereo, ...)."""


class DatasetError(KwsError, FileNotFoundError):
    """A dataset folder that is missing, incomplete or not in an expected layout."""


class ConfigError(KwsError, ValueError):
    """A params file or config value that is malformed, of the wrong type or unknown."""


class ArtifactError(KwsError, ValueError):
    """An exported model file that is damaged, truncated or of an unsupported version."""


class OfflineError(KwsError, ConnectionError):
    """A download or hub access was asked for but the network is not reachable."""
