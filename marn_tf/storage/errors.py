"""The errors of the storage layer: a config mistake to the user (exit code and message, no traceback), and how
the `marn` command ends on an error it can explain (`reported`)."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from marn_tf.config_loader import ConfigError
from marn_tf.storage import files
from marn_tf.storage.disk_full import disk_full_message

log = logging.getLogger(__name__)


class OwnershipError(ConfigError):
    """marn refuses to write or delete here; the message says why and what to do."""


class LockedError(OwnershipError):
    """Another marn command holds the directory's lock."""


def reported(command: Callable[[], int]) -> int:
    """`command()`'s exit code, or the code of the error it raised, said in one `error: ...` line on stderr, never a
    traceback: a usage or config mistake (`ConfigError`, which the refusals here are) exits 2; a file that cannot be
    read (`StorageError`) and a full disk or quota, wherever it was met, exit 1. Any other error is raised again."""
    try:
        return command()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except files.StorageError as err:  # a file that exists but cannot be read or listed: never taken as missing
        print(f"error: {disk_full_message(err) or err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 -- only a full disk is explained here; anything else is raised again
        message = disk_full_message(err)
        if message is None:
            raise
        log.debug("the disk filled up", exc_info=True)  # -v shows where
        print(f"error: {message}", file=sys.stderr)
        return 1
