"""How the `marn` command ends on an error it can explain: one `error: ...` line on stderr and an exit code, never
a traceback. A usage or config mistake (`ConfigError`, which the refusals of `marn_tf.storage` are) exits 2; a file
that cannot be read (`StorageError`) and a full disk or quota, wherever it was met, exit 1."""
from __future__ import annotations

import logging
import sys
from typing import Callable

from marn_tf.config_loader import ConfigError
from marn_tf.storage import files
from marn_tf.storage.disk_full import disk_full_message

log = logging.getLogger(__name__)


def reported(command: Callable[[], int]) -> int:
    """`command()`'s exit code, or the code of the error it raised, said in one line."""
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
