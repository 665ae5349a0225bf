"""Where a `GroupTrainer`'s networks train: here, or as Ray tasks.

Each network (one group at one seed) is an independent job: it depends
only on the trainer's `Recipe`, its group and its seed
(`networks.train_network` clears the Keras session and seeds every
generator first). `GroupTrainer` hands the networks still missing to an
executor:

* `None` (the default): one after another in this process.
* `RayExecutor`: one Ray task per network, with the CPUs and GPUs each
  declares, TensorFlow's thread pools sized to the CPUs.

Data. Array data goes into Ray's object store once per `run` (workers on
the driver's node read it without copying; each other node holds one
copy). Data that cannot be pickled (a `tf.data.Dataset`) is built again
in each worker process, once, by the trainer's `data_function`.

Source of truth. The worker that trains a network writes its cache file
atomically; the driver counts a network as done only when it reads that
file back, so the cache directory never holds a partial network and a
rerun after a killed driver trains only what is missing. On a cluster the
cache directory must be storage that every worker reaches: `start` checks
that a file the driver writes there is seen by a task on every node. A
worker that dies is retried by Ray (`max_retries`).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import uuid
from collections.abc import Callable
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for annotations only
    from tag_keras.train.networks import Network
    from tag_keras.train.networks import Recipe


#: Set by tests only, in the driver's environment: a path; the first
#: task to find it absent creates it and kills its worker, so that Ray's
#: retry is exercised.
KILL_FIRST_ATTEMPT = "TAG_KERAS_TEST_KILL_FIRST_ATTEMPT"

#: Environment variables that change TensorFlow's numbers or noise, sent
#: to every worker as the driver has them.
NUMERIC_ENVIRONMENT = (
    "TF_ENABLE_ONEDNN_OPTS",
    "TF_DETERMINISTIC_OPS",
    "TF_CPP_MIN_LOG_LEVEL",
    "ONEDNN_MAX_CPU_ISA",
    "PYTHONHASHSEED",
)


class RayExecutor:
    """Trains each network as one Ray task.

    Args:
        workers: Start a local Ray runtime with this many workers (each
            `cpus_per_network` CPUs); None: join `address`, or a runtime
            already started in this process.
        address: A Ray cluster to join (an address `ray.init` takes).
        cpus_per_network: CPUs each network's task declares; its
            TensorFlow intra- and inter-op thread pools get as many
            threads (at least 1).
        gpus_per_network: GPUs each network's task declares.
        max_retries: How often Ray retries a task whose worker died.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        address: str | None = None,
        cpus_per_network: float = 1,
        gpus_per_network: float = 0,
        max_retries: int = 3,
    ):
        if workers is not None and workers < 1:
            raise ValueError(
                f"`workers` must be at least 1. Received: workers={workers}"
            )
        if workers is not None and address is not None:
            raise ValueError(
                "Give `workers` (a local runtime) or `address` "
                "(a cluster), not both. Received: "
                f"workers={workers}, address={address!r}"
            )
        if not cpus_per_network > 0 or gpus_per_network < 0:
            raise ValueError(
                "`cpus_per_network` must be positive and `gpus_per_network`"
                f" not negative. Received: cpus_per_network="
                f"{cpus_per_network}, gpus_per_network={gpus_per_network}"
            )
        self.workers, self.address = workers, address
        self.cpus, self.gpus = cpus_per_network, gpus_per_network
        self.max_retries = int(max_retries)
        self._started = False

    def __repr__(self):
        where = (
            f"workers={self.workers}"
            if self.workers is not None
            else f"address={self.address!r}"
        )
        return (
            f"RayExecutor({where}, cpus_per_network={self.cpus:g}, "
            f"gpus_per_network={self.gpus:g})"
        )

    def start(self) -> RayExecutor:
        """Starts (or joins) the Ray runtime; checks that a network fits.

        Raises:
            ValueError: No node has the CPUs or GPUs one network declares.
        """
        import ray

        if not ray.is_initialized():
            env = {
                name: os.environ[name]
                for name in NUMERIC_ENVIRONMENT
                if name in os.environ
            }
            if self.workers is not None:
                # Ray's notice that the runtime it starts uses token
                # authentication (a loopback runtime of this run only).
                logging.getLogger("ray._private.authentication").setLevel(
                    logging.ERROR
                )
                # Local workers import what the driver imports (the model
                # and data modules from the working directory included).
                path = [os.getcwd()] + [p for p in sys.path if p]
                env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
                ray.init(
                    # Ray counts whole CPUs; fractions per network add up.
                    num_cpus=math.ceil(self.workers * self.cpus),
                    include_dashboard=False,
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env={"env_vars": env},
                )
            else:
                ray.init(
                    address=self.address,
                    log_to_driver=False,
                    configure_logging=False,
                    runtime_env={"env_vars": env} if env else None,
                )
            self._started = True
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for name, asked, flag in (
            ("CPU", self.cpus, "cpus_per_network"),
            ("GPU", self.gpus, "gpus_per_network"),
        ):
            largest = max((node.get(name, 0) for node in nodes), default=0)
            if asked > largest:
                self.stop()
                raise ValueError(
                    f"{flag} asks for {asked:g} {name}s per network, but no"
                    f" node of the Ray cluster has more than {largest:g}, so"
                    " no network could start; ask for fewer, or join a "
                    f"cluster that has them. Received: {flag}={asked:g}"
                )
        return self

    def stop(self) -> None:
        """Shuts down a runtime this executor started."""
        if self._started:
            import ray

            ray.shutdown()
            self._started = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def check_shared(self, directory: str) -> None:
        """Raises `ValueError` unless a task on every node sees a file
        the driver wrote in `directory` (the cache must be shared)."""
        import ray

        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".probe-{uuid.uuid4().hex}")
        with open(probe, "w", encoding="utf-8") as handle:
            handle.write("tag_keras")
        try:
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            if len(nodes) < 2:
                return
            from ray.util.scheduling_strategies import (
                NodeAffinitySchedulingStrategy,
            )

            look = ray.remote(os.path.exists).options(num_cpus=0)
            seen = ray.get(
                [
                    look.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(
                            node, soft=False
                        )
                    ).remote(probe)
                    for node in nodes
                ]
            )
            if not all(seen):
                raise ValueError(
                    f"{sum(not s for s in seen)} of {len(nodes)} Ray nodes "
                    f"cannot see {directory}: the cache directory must be "
                    "storage every worker reaches (a shared file system); "
                    "give such an --out_dir."
                )
        finally:
            os.remove(probe)

    def run(
        self,
        recipe: Recipe,
        jobs: Sequence[tuple],
        done: Callable[[Network], object],
    ) -> None:
        """Trains `jobs` (`(group, seed, fingerprints, path)` each, path
        the cache file or None) and calls `done(network)` as each
        finishes, in the order they finish. Ctrl-C (or any error) cancels
        what is left, killing the networks in training; their cache files
        are never written."""
        import ray

        from tag_keras.train import networks

        if not ray.is_initialized():
            self.start()
        task = ray.remote(_train_remote).options(
            num_cpus=self.cpus,
            num_gpus=self.gpus,
            max_retries=self.max_retries,
        )
        try:
            shared = ray.put(recipe.shippable())
        except Exception as error:  # noqa: BLE001 (any pickling error)
            raise ValueError(
                "The model function, data or fit settings cannot be sent to"
                f" Ray workers ({type(error).__name__}: "
                f"{' '.join(str(error).split())[:200]}); give numpy arrays "
                "and a model function importable by the workers."
            ) from None
        marker = os.environ.get(KILL_FIRST_ATTEMPT)
        threads = max(1, int(self.cpus))
        token = uuid.uuid4().hex  # this run's recipe, in each worker
        pending = {
            task.remote(
                shared, token, group, seed, fingerprints, path, threads, marker
            ): path
            for group, seed, fingerprints, path in jobs
        }
        try:
            while pending:
                (ready,), _ = ray.wait(list(pending), num_returns=1)
                path = pending.pop(ready)
                network = ray.get(ready)
                if path is not None:  # the file is what counts
                    network = networks.load_network(path)
                done(network)
        except BaseException:
            for ref in pending:
                ray.cancel(ref, force=True)
            raise


#: The recipe rebuilt in this worker process, by its run's token, so
#: that `data_function` runs once per worker and run.
_REBUILT: dict = {}


def _train_remote(
    recipe, token, group, seed, fingerprints, path, threads, marker=None
):
    """One Ray task: trains one network and writes its cache file."""
    from tag_keras.train import networks

    _set_threads(threads)
    if marker and not os.path.exists(marker):
        with open(marker, "w") as handle:
            handle.write(f"{group} {seed}")
        os._exit(1)  # a worker dying mid-network
    if recipe.data is None:
        if token not in _REBUILT:
            _REBUILT.clear()
            _REBUILT[token] = _rebuilt(
                recipe, (fingerprints or {}).get("data")
            )
        recipe = _REBUILT[token]
    network = networks.train_network(recipe, group, seed, fingerprints)
    if path is not None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        networks.save_network(path, network)
    return network


def _rebuilt(recipe, digest):
    """`recipe.rebuilt()`, refused when its data differs from the
    driver's (`digest`, the data fingerprint)."""
    from tag_keras.train import fingerprint

    recipe = recipe.rebuilt()
    if digest is not None and fingerprint.data_digest(recipe.data) != digest:
        raise ValueError(
            "The data function returned other data in a Ray worker than in"
            " the driver (its fingerprint differs); it must return the same"
            " data every time it is called (fix its shuffling seed)."
        )
    return recipe


def _set_threads(threads):
    """Sizes TensorFlow's thread pools (only before its first operation;
    a worker process keeps the size it started with)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        pass
