"""One run per directory: a lock file holding its owner's pid and host.

A second run on a directory another live process owns gets a one-line
`DirectoryInUseError` naming the directory and the owner, before anything
is written there. A lock left by a process that is gone (same host, pid
not running) is taken over with a warning. The owning process may take
its own lock again (several `fit` calls in one process). A leaf module:
standard library only.
"""

import json
import os
import socket
import warnings

#: The lock file's name inside the directory.
LOCK_NAME = ".tag_keras.lock"


class DirectoryInUseError(RuntimeError):
    """Another live process owns the directory; the message is one line."""


def acquire(directory, what="log_dir"):
    """Takes the lock of `directory` (created if missing); returns its path.

    Raises:
        DirectoryInUseError: Another live process holds it, or a process
            on another host (whose liveness cannot be checked).
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, LOCK_NAME)
    me = {"pid": os.getpid(), "host": socket.gethostname()}
    for _ in range(3):
        try:
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            owner = _read(path)
            if owner == me:
                return path
            if owner is not None and _alive(owner):
                raise DirectoryInUseError(
                    f"{what} {directory} is in use by process {owner['pid']}"
                    f" on {owner['host']}; give this run its own {what}, or "
                    f"delete {path} if that run is gone. Received: "
                    f"{what}={directory}"
                ) from None
            warnings.warn(
                f"{what} {directory}: taking over the lock of process "
                f"{(owner or {}).get('pid', '?')}, which is no longer "
                "running.",
                stacklevel=3,
            )
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(handle, "w") as out:
            json.dump(me, out)
        return path
    raise DirectoryInUseError(
        f"Cannot take the lock of {what} {directory}: other processes keep "
        f"taking it. Received: {what}={directory}"
    )


def release(path):
    """Removes the lock at `path` if this process owns it."""
    if _read(path) == {"pid": os.getpid(), "host": socket.gethostname()}:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _read(path):
    try:
        with open(path) as handle:
            owner = json.load(handle)
    except (OSError, ValueError):
        return None  # Torn or vanished: treated as stale.
    if not isinstance(owner, dict) or not isinstance(owner.get("pid"), int):
        return None
    return {"pid": owner["pid"], "host": owner.get("host")}


def _alive(owner):
    if owner["host"] != socket.gethostname():
        return True  # Cannot tell: assume it runs.
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
