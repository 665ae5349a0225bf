"""Flags shared by the experiment binaries, each defined once per process.

A binary asks for the names it uses: `define_common_flags(("dataset",
"out_dir", ...))` defines those not defined yet and returns their holders;
it keeps the result module-private and reads it only in `main`. absl allows
a flag name once per process; the registry here gives every binary that
asks for a name the same holder, so the binaries (and the benchmarks) can
be imported together, as one pytest process does, without
`allow_override`. A binary defines only the flags it uses, so `--helpfull`
lists no flag it would ignore.
"""

import types

from experiments import data as data_lib
from experiments.lib import distribution as distribution_lib
from experiments.lib import training
from tag_keras import InputError
from tag_keras.train import executor_flags

_PER_DATASET = " (default: per dataset, see training.DEFAULT_CONFIGS)"

# Name -> (DEFINE_* function name, default, help, extra keyword arguments).
_SPECS = {
    "dataset": ("enum", "digits", "Dataset.",
                {"enum_values": list(data_lib.DATASETS)}),
    "tasks": ("list", None, "Tasks (default: the dataset's default tasks).",
              {}),
    "data_dir": ("string", None,
                 "Data directory (CelebA: the tfds data_dir).", {}),
    "download": ("bool", True, "CelebA: let tensorflow-datasets download and "
                 "prepare the data when it is absent.", {}),
    "out_dir": ("string", None, "Directory for everything written (default: "
                "runs/<binary>).", {}),
    "epochs": ("integer", None, "Largest number of epochs" + _PER_DATASET
               + ".", {"lower_bound": 1}),
    "batch_size": ("integer", None, "Batch size" + _PER_DATASET + ".",
                   {"lower_bound": 1}),
    "learning_rate": ("float", None, "Initial SGD learning rate"
                      + _PER_DATASET + ".", {"lower_bound": 0.0}),
    "momentum": ("float", 0.9, "SGD momentum (0.9 as the paper).",
                 {"lower_bound": 0.0, "upper_bound": 0.999}),
    "seed": ("integer", 0, "Random seed.", {}),
    "affinity_every_n_steps": ("integer", 10, "Measure affinity every this "
                               "many steps (10 as the paper).",
                               {"lower_bound": 1}),
    "width": ("integer", None, "Encoder width, the same for every network"
              + _PER_DATASET + ".", {"lower_bound": 1}),
    "patience": ("integer", None, "Early stopping patience in epochs on the "
                 "validation loss; the best epoch is restored" + _PER_DATASET
                 + ".", {"lower_bound": 1}),
    "lr_halving_epochs": ("integer", None, "Halve the learning rate every "
                          "this many epochs" + _PER_DATASET + ".",
                          {"lower_bound": 1}),
    "budgets": ("list", None, "Budgets: numbers of networks (default: "
                "2,3,4; train_groups: every budget in the JSON).", {}),
    "gradnorm_alpha": ("float", 1.5, "GradNorm's asymmetry alpha (training "
                       "with gradnorm).", {"lower_bound": 0.0}),
    "distribution": ("enum", "default", "tf.distribute strategy of every "
                     "network: default (none), mirrored (MirroredStrategy "
                     "over this machine's GPUs, or its logical CPUs without "
                     "GPU), multi_worker (MultiWorkerMirroredStrategy; the "
                     "cluster comes from TF_CONFIG and only the chief "
                     "writes files). --batch_size is the global batch.",
                     {"enum_values": list(distribution_lib.DISTRIBUTIONS)}),
    "seeds": ("integer", 3, "Runs per method, with seeds 0..seeds-1 "
              "(initial weights, shuffling; the data split is fixed). "
              "Results already on disk are reused, so raising it adds "
              "seeds.", {"lower_bound": 1}),
    "measure_seeds": ("integer", 6, "Measuring runs per task set, seeds "
                      "0..n-1 (benchmarks).", {"lower_bound": 1}),
    "truth_seeds": ("integer", 3, "Training seeds of every network of the "
                    "truth, whose mean test error is the truth "
                    "(benchmarks).", {"lower_bound": 1}),
    "resamples": ("integer", None, "Stability resamples of the affinity "
                  "structure (benchmarks; default per benchmark).",
                  {"lower_bound": 10}),
    "verbose": ("enum", "lines", "Progress while an all-task network "
                "trains (a measuring run, a diagnostic): bar (Keras's "
                "progress bar), lines (one line per epoch with losses, "
                "seconds and ETA), silent. Group networks (the library's "
                "GroupTrainer) print one line each.",
                {"enum_values": ["bar", "lines", "silent"]}),
}

#: What a binary that trains networks on a dataset uses.
DATA = ("dataset", "tasks", "data_dir", "download")
TRAINING = ("epochs", "batch_size", "learning_rate", "momentum", "seed",
            "width", "patience", "lr_halving_epochs", "verbose")
#: Where the networks train (`tag_keras.train.executor_flags`: --workers,
#: --ray_address, --cpus_per_network, --gpus_per_network).
EXECUTOR = executor_flags.NAMES

_DEFINED = {}


def define_common_flags(names):
    """Defines the named flags (once per process); returns their holders.

    Returns:
        A namespace with one absl `FlagHolder` per name.
    """
    unknown = [n for n in names if n not in _SPECS and n not in EXECUTOR]
    if unknown:
        raise ValueError(f"No common flags {unknown}; known: "
                         f"{list(_SPECS) + list(EXECUTOR)}")
    return types.SimpleNamespace(**{n: _define(n) for n in names})


def _define(name):
    if name in EXECUTOR:  # defined once, beside tag-train's
        return getattr(executor_flags.define(), name)
    if name not in _DEFINED:
        from absl import flags

        kind, default, help_text, extra = _SPECS[name]
        define = getattr(flags, f"DEFINE_{kind}")
        _DEFINED[name] = define(name, default, help=help_text, **extra)
    return _DEFINED[name]


def value(common, name, default=None):
    """The flag's value, `default` when unset or not defined by the binary."""
    holder = getattr(common, name, None)
    if holder is None or holder.value is None:
        return default
    return holder.value


def budget_list(common, default=(2, 3, 4)):
    """`--budgets` as a list of ints (`default` when not set)."""
    if not common.budgets.value:
        return None if default is None else list(default)
    try:
        budgets = [int(b) for b in common.budgets.value]
    except ValueError:
        budgets = [0]
    if min(budgets) < 1:
        raise InputError(
            "--budgets must be integers >= 1. Received: "
            f"{','.join(common.budgets.value)}")
    return sorted(set(budgets))


def config_from_flags(common, dataset=None):
    """`TrainConfig` from the flag values (call from `main` only)."""
    dataset = dataset or common.dataset.value
    return training.default_config(dataset, **{
        name: value(common, name)
        for name in ("epochs", "batch_size", "learning_rate", "momentum",
                     "seed", "affinity_every_n_steps", "width", "patience",
                     "lr_halving_epochs", "verbose")})


def distribution_from_flags(common):
    """The `--distribution` strategy; raises `InputError` (one line).

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
        raise InputError(f"--distribution={name}: {error}") from None


def executor_from_flags(common, out_dir):
    """The started `RayExecutor` the flags ask for, or None (train in
    this process), its nodes checked to see `out_dir`; raises
    `InputError` (one line). Stop it at the end."""
    return executor_flags.start(executor_flags.executor_from_flags(common),
                                out_dir)


def data_from_flags(common, dataset=None):
    """Loads the dataset the flags name; raises `InputError` (one line)."""
    return training.load_data(
        dataset or common.dataset.value, tasks=common.tasks.value,
        data_dir=common.data_dir.value, seed=value(common, "seed", 0),
        download=common.download.value)
