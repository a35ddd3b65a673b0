"""The one exception type that reaches a user as a single sentence.

Anything a user can get wrong (a config key, a missing or malformed data file, a checkpoint that
does not exist) raises `StackGANError` with a message that names the file and what is wrong.
Command lines catch it in `misc.cli.run_cli`, print the message and exit non-zero, without a
traceback. Every other exception is a bug and keeps its traceback.
"""


class StackGANError(Exception):
    """A user-facing error: its message is one sentence naming the file and the problem."""


class ConfigError(StackGANError):
    """A configuration file or override is invalid."""


class DataError(StackGANError):
    """A dataset file is missing, unreadable or inconsistent."""


class CheckpointError(StackGANError):
    """A checkpoint is missing or does not match the model."""
