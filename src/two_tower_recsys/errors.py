"""User-facing errors: each carries one line that names the problem.

Entry points catch :class:`RecsysError` and print its message instead of a traceback;
anything else is a bug and keeps its traceback.
"""


class RecsysError(Exception):
    """A problem the user can fix (bad input, bad config, missing or corrupt file)."""


class ConfigError(RecsysError):
    """A configuration value is missing, unknown or invalid."""


class DataError(RecsysError):
    """Input data is unreadable or does not have the expected shape."""


class ChecksumError(DataError):
    """A file's checksum differs from the expected one."""


class ArtifactError(RecsysError):
    """Trained artifacts are missing, truncated or do not match their manifest."""


class RequestError(RecsysError):
    """A recommendation request is invalid (bad k, bad user id, malformed or oversized rows)."""
