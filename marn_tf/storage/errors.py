"""The errors of the storage layer: a config mistake to the user (exit code and message, no traceback)."""
from marn_tf.config_loader import ConfigError


class OwnershipError(ConfigError):
    """marn refuses to write or delete here; the message says why and what to do."""


class LockedError(OwnershipError):
    """Another marn command holds the directory's lock."""
