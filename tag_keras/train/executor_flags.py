"""The flags that choose where networks train, shared by the binaries.

`tag-train`, the experiments pipeline and the decision benchmark take the
same four flags:

    --workers=N            a local Ray runtime with N workers, shut down at
                           the end (no cluster needed)
    --ray_address=ADDRESS  join a running Ray cluster ("auto": RAY_ADDRESS,
                           else the cluster `ray start` left on this host)
    --cpus_per_network=C   CPUs each network's Ray task declares
    --gpus_per_network=G   GPUs each network's Ray task declares

Neither `--workers` nor `--ray_address`: networks train one after another
in the command's own process (the default). `define()` defines the flags
once per process and returns their holders; `executor_from_flags` turns
them into a `RayExecutor` (not started), or None, raising `InputError`
with one line for a bad value; `start` starts it, naming an address that
does not answer, a cluster without the GPUs asked for, or a network
larger than every node. Only the binaries import this module.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import types

from absl import flags

from tag_keras import _errors

#: Seconds an address has to answer before it is called unreachable.
CONNECT_TIMEOUT = 10.0

NAMES = ("workers", "ray_address", "cpus_per_network", "gpus_per_network")

_HOLDERS: dict = {}


def define() -> types.SimpleNamespace:
    """Defines the four flags (once per process); their holders."""
    if not _HOLDERS:
        _HOLDERS["workers"] = flags.DEFINE_integer(
            "workers",
            None,
            "Train the networks as Ray tasks on a local Ray"
            " runtime with this many workers (started here, shut down at "
            "the end); needs `pip install tag_keras[ray]`. Default: one "
            "after another in this process.",
        )
        _HOLDERS["ray_address"] = flags.DEFINE_string(
            "ray_address",
            None,
            "Train the networks as Ray tasks on the "
            "running Ray cluster at this address (host:port, ray://host:"
            "port, or auto: RAY_ADDRESS, else the cluster `ray start` left "
            "on this host). --out_dir must be storage every node reaches.",
        )
        _HOLDERS["cpus_per_network"] = flags.DEFINE_float(
            "cpus_per_network",
            1.0,
            "With --workers or --ray_address: CPUs"
            " each network's task declares (and its TensorFlow threads).",
        )
        _HOLDERS["gpus_per_network"] = flags.DEFINE_float(
            "gpus_per_network",
            0.0,
            "With --workers or --ray_address: GPUs"
            " each network's task declares (fractions share a GPU).",
        )
    return types.SimpleNamespace(**_HOLDERS)


def executor_from_flags(holders):
    """A `RayExecutor` for the flags (not started yet), or None."""
    workers = holders.workers.value
    address = holders.ray_address.value
    cpus = holders.cpus_per_network.value
    gpus = holders.gpus_per_network.value
    InputError = _errors.InputError
    if workers is not None and workers < 1:
        raise InputError(
            f"--workers must be at least 1 (leave it out to "
            f"train in this process). Received: workers="
            f"{workers}"
        )
    if workers is not None and address:
        raise InputError(
            "Give --workers (a local Ray runtime) or --ray_address (a "
            f"cluster), not both. Received: workers={workers}, "
            f"ray_address={address}"
        )
    if not cpus > 0:
        raise InputError(
            f"--cpus_per_network must be positive. Received: "
            f"cpus_per_network={cpus:g}"
        )
    if gpus < 0:
        raise InputError(
            f"--gpus_per_network must be 0 or more. Received: "
            f"gpus_per_network={gpus:g}"
        )
    if workers is None and not address:
        if cpus != 1 or gpus != 0:
            raise InputError(
                "--cpus_per_network and --gpus_per_network apply to Ray "
                "tasks: give --workers or --ray_address too. Received: "
                f"cpus_per_network={cpus:g}, gpus_per_network={gpus:g}"
            )
        return None
    if importlib.util.find_spec("ray") is None:
        flag = "--workers" if workers is not None else "--ray_address"
        raise InputError(
            f"{flag} needs Ray, which is not installed: pip "
            "install 'tag_keras[ray]'. Received: "
            f"{flag[2:]}={workers or address}"
        )
    from tag_keras.train import executors

    if address:
        address = resolve_address(address)
    return executors.RayExecutor(
        workers=workers,
        address=address,
        cpus_per_network=cpus,
        gpus_per_network=gpus,
    )


def resolve_address(address: str) -> str:
    """`address`, with "auto" read from RAY_ADDRESS or the local cluster,
    checked to answer within `CONNECT_TIMEOUT` seconds."""
    given = address
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS") or _local_cluster()
        if not address:
            raise _errors.InputError(
                "--ray_address=auto found no cluster: RAY_ADDRESS is unset "
                "and no `ray start --head` runs on this host. Start one, or "
                "give its address. Received: ray_address=auto"
            )
    host, port = _host_port(address, given)
    try:
        with socket.create_connection((host, port), CONNECT_TIMEOUT):
            pass
    except OSError as error:
        raise _errors.InputError(
            f"--ray_address: no Ray cluster answers at {host}:{port} within"
            f" {CONNECT_TIMEOUT:g} s ({error.strerror or error}); start one "
            "with `ray start --head` and give the address it prints. "
            f"Received: ray_address={given}"
        ) from None
    return address


def _host_port(address, given):
    bare = address.split("://", 1)[-1].rstrip("/")
    host, _, port = bare.rpartition(":")
    if not host or not port.isdigit():
        raise _errors.InputError(
            "--ray_address must be host:port, ray://host:port or auto. "
            f"Received: ray_address={given}"
        )
    return host, int(port)


def _local_cluster():
    """The address `ray start --head` recorded on this host, if any."""
    path = os.path.join(
        os.environ.get("RAY_TMPDIR", "/tmp"), "ray", "ray_current_cluster"
    )
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def start(executor, directory=None):
    """Starts `executor` (None: nothing) and checks that every node of
    its cluster sees `directory` (the cache); a refusal is `InputError`.
    """
    if executor is None:
        return None
    try:
        executor.start()  # its refusals begin with the argument's name
    except ValueError as error:
        raise _errors.InputError(f"--{error}") from None
    if directory is not None:
        try:
            executor.check_shared(directory)
        except ValueError as error:
            executor.stop()
            raise _errors.InputError(f"--out_dir: {error}") from None
    return executor
