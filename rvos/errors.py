"""Errors that reach the user as one line instead of a traceback."""


class RvosError(Exception):
    """Base class: a problem with the user's input (params, data, checkpoints, files)."""


class ConfigError(RvosError):
    """params.yaml has an unknown key, a wrong type or a value out of range."""


class DataError(RvosError):
    """A dataset file is missing, malformed or unsafe."""


class UnsafePathError(DataError):
    """A dataset file names a path outside its dataset: never skipped, even with skip_bad."""


class OutputExistsError(RvosError, FileExistsError):
    """An output directory would replace a directory that the writer did not make."""


class CheckpointError(RvosError):
    """A checkpoint is missing, corrupt or does not fit the model."""
