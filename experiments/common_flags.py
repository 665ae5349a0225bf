"""Flags shared by the experiment binaries.

Each binary calls `define_common_flags()`
at import and keeps the returned holders module-private; only its `main`
reads them (through `config_from_flags`). The flags are defined once per
process (the pipeline imports the other binaries), and with
`allow_override` so that importing the binaries next to other modules
that define some of these names (`experiments.demo`: out_dir, epochs,
seed; the benchmarks: tasks, batch_size), as one pytest process does,
does not raise DuplicateFlagError. Only a binary run as `__main__`
parses them.
"""

import dataclasses

from experiments import data as data_lib
from experiments import distribution as distribution_lib
from experiments import training


_COMMON_FLAGS = []
_SEEDS_FLAG = []


@dataclasses.dataclass(frozen=True)
class CommonFlags:
    """The absl flag holders every experiment binary defines."""

    dataset: object
    tasks: object
    data_dir: object
    download: object
    out_dir: object
    epochs: object
    batch_size: object
    learning_rate: object
    momentum: object
    seed: object
    affinity_every_n_steps: object
    width: object
    patience: object
    lr_halving_epochs: object
    budgets: object
    gradnorm_alpha: object
    distribution: object

    def out_dir_or(self, default):
        """The `--out_dir` value, or `default` when the flag is not set."""
        return self.out_dir.value or default

    def budget_list(self, default=(2, 3, 4)):
        """`--budgets` as a list of ints (`default` when not set)."""
        if not self.budgets.value:
            return None if default is None else list(default)
        try:
            budgets = [int(b) for b in self.budgets.value]
        except ValueError:
            budgets = [0]
        if min(budgets) < 1:
            raise training.DataError(
                "--budgets must be integers >= 1. Received: "
                f"{','.join(self.budgets.value)}")
        return budgets


def define_common_flags():
    """Defines the common flags once; returns their holders."""
    if _COMMON_FLAGS:
        return _COMMON_FLAGS[0]
    from absl import flags

    per_dataset = " (default: per dataset, see training.DEFAULT_CONFIGS)"
    override = {"allow_override": True}
    holders = CommonFlags(
        dataset=flags.DEFINE_enum(
            "dataset", "digits", list(data_lib.DATASETS), "Dataset.",
            **override),
        tasks=flags.DEFINE_list(
            "tasks", None, "Tasks (default: the dataset's default tasks).",
            **override),
        data_dir=flags.DEFINE_string(
            "data_dir", None, "Data directory (CelebA: the tfds data_dir).",
            **override),
        download=flags.DEFINE_bool(
            "download", True, "CelebA: let tensorflow-datasets download and "
            "prepare the data when it is absent.", **override),
        out_dir=flags.DEFINE_string(
            "out_dir", None, "Directory for everything written (default: "
            "runs/<binary>).", **override),
        epochs=flags.DEFINE_integer(
            "epochs", None, "Largest number of epochs" + per_dataset + ".",
            lower_bound=1, **override),
        batch_size=flags.DEFINE_integer(
            "batch_size", None, "Batch size" + per_dataset + ".",
            lower_bound=1, **override),
        learning_rate=flags.DEFINE_float(
            "learning_rate", None, "Initial SGD learning rate" + per_dataset
            + ".", lower_bound=0.0, **override),
        momentum=flags.DEFINE_float(
            "momentum", 0.9, "SGD momentum (0.9 as the paper).",
            lower_bound=0.0, upper_bound=0.999, **override),
        seed=flags.DEFINE_integer("seed", 0, "Random seed.", **override),
        affinity_every_n_steps=flags.DEFINE_integer(
            "affinity_every_n_steps", 10, "Measure affinity every this many "
            "steps (10 as the paper).", lower_bound=1, **override),
        width=flags.DEFINE_integer(
            "width", None, "Encoder width, the same for every network"
            + per_dataset + ".", lower_bound=1, **override),
        patience=flags.DEFINE_integer(
            "patience", None, "Early stopping patience in epochs on the "
            "validation loss; the best epoch is restored" + per_dataset
            + ".", lower_bound=1, **override),
        lr_halving_epochs=flags.DEFINE_integer(
            "lr_halving_epochs", None, "Halve the learning rate every this "
            "many epochs" + per_dataset + ".", lower_bound=1, **override),
        budgets=flags.DEFINE_list(
            "budgets", None, "Budgets: numbers of networks (default: "
            "2,3,4; train_groups: every budget in the JSON).", **override),
        gradnorm_alpha=flags.DEFINE_float(
            "gradnorm_alpha", 1.5, "GradNorm's asymmetry alpha (training "
            "with gradnorm).", lower_bound=0.0, **override),
        distribution=flags.DEFINE_enum(
            "distribution", "default", list(distribution_lib.DISTRIBUTIONS),
            "tf.distribute strategy of every network: default (none), "
            "mirrored (MirroredStrategy over this machine's GPUs, or its "
            "logical CPUs without GPU), multi_worker "
            "(MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG "
            "and only the chief writes files). --batch_size is the global "
            "batch.", **override),
    )
    _COMMON_FLAGS.append(holders)
    return holders


def define_seeds_flag():
    """`--seeds`, shared by the binaries that repeat runs over seeds.

    One definition (and one holder) however many such binaries a process
    imports, as absl allows a flag name once.
    """
    if _SEEDS_FLAG:
        return _SEEDS_FLAG[0]
    from absl import flags

    holder = flags.DEFINE_integer(
        "seeds", 3, "Runs per method, with seeds 0..seeds-1 (initial "
        "weights, shuffling; the data split is fixed). Results already "
        "on disk are reused, so raising it adds seeds.", lower_bound=1)
    _SEEDS_FLAG.append(holder)
    return holder


def config_from_flags(common):
    """`TrainConfig` from the flag values (call from `main` only)."""
    return training.default_config(
        common.dataset.value,
        epochs=common.epochs.value,
        batch_size=common.batch_size.value,
        learning_rate=common.learning_rate.value,
        momentum=common.momentum.value,
        seed=common.seed.value,
        affinity_every_n_steps=common.affinity_every_n_steps.value,
        width=common.width.value,
        patience=common.patience.value,
        lr_halving_epochs=common.lr_halving_epochs.value,
    )


def distribution_from_flags(common):
    """The `--distribution` strategy; raises `DataError` (one line).

    Call it from `main` before anything else touches TensorFlow (a
    multi-worker strategy must be created first).
    """
    name = common.distribution.value
    if name != "default":
        import tensorflow as tf

        # One INFO line per collective otherwise; the binaries print the
        # strategy and its replicas themselves.
        tf.get_logger().setLevel("WARNING")
    try:
        return distribution_lib.make_distribution(name)
    except ValueError as error:
        raise training.DataError(f"--distribution={name}: {error}") from None


def data_from_flags(common):
    """Loads the dataset the flags name; raises `DataError` (one line)."""
    return training.load_data(
        common.dataset.value, tasks=common.tasks.value,
        data_dir=common.data_dir.value, seed=common.seed.value,
        download=common.download.value)


def reject_unused_flags(program, names, reason):
    """Stops a binary given flags that it defines but does not use.

    A process defines every flag of the modules it imports (the pipeline
    imports the other binaries), so `--helpfull` lists some that this
    binary ignores; setting one is a usage error rather than silently
    without effect.

    Raises:
        absl.app.UsageError: Naming each of `names` set on the command line.
    """
    from absl import app
    from absl import flags

    given = [f"--{n}" for n in names if n in flags.FLAGS
             and flags.FLAGS[n].present]
    if given:
        raise app.UsageError(
            f"{program} does not use {', '.join(given)} ({reason}); "
            "remove it.")
