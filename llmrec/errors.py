"""User-facing errors.

Every error a user can cause by bad input (a missing file, a malformed row, an unknown config key)
is raised as a subclass of :class:`LlmrecError` with a message that names the problem and the fix.
The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""


class LlmrecError(Exception):
    """An error caused by input or environment, with a message meant for the user."""


class ConfigError(LlmrecError):
    """A config file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(LlmrecError):
    """A data file is missing or malformed, or a column mapping does not match the file."""


class MissingDependencyError(LlmrecError):
    """An optional dependency needed for the requested feature is not installed."""
