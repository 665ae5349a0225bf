"""Generated tasks with a known answer: planted clusters and noise tasks.

Inputs are standard normal vectors x in R^d (`num_features`). There are
`num_clusters` clusters of `tasks_per_cluster` binary tasks each, plus
`num_noise_tasks` noise tasks:

* Cluster c has a unit direction w_c; the cluster directions are
  orthonormal, so different clusters are unrelated (their labels agree on
  half of the inputs).
* Task k of cluster c labels x by `[x · (w_c + perturbation · e_ck) > 0]`
  with its own random unit vector e_ck, then flips a `label_noise` share of
  its labels at random. With the defaults (`perturbation=0.2`,
  `label_noise=0.05`) two tasks of one cluster agree on about 84% of the
  inputs (91% before label noise): they share structure and should help
  each other.
* A noise task's labels are fair coin flips independent of x. Nothing can
  be learnt from them, fitting them only memorises the training set, so
  they should transfer negatively onto every other task.

Task names are `c{c}_t{k}` and `noise_{k}`. The planted answer is in
`metadata["clusters"]` (`{task: cluster index, or None for noise}`);
`planted_groups` turns it into groups. Everything is drawn from
`np.random.default_rng(seed)`, independently of which tasks are selected.
"""

import numpy as np

from experiments.data import base


def task_names(num_clusters, tasks_per_cluster, num_noise_tasks):
    """All task names, clusters first, then the noise tasks."""
    return tuple(
        f"c{c}_t{k}"
        for c in range(num_clusters) for k in range(tasks_per_cluster)
    ) + tuple(f"noise_{k}" for k in range(num_noise_tasks))


def planted_groups(clusters):
    """The planted groups from `{task: cluster or None}`.

    Returns:
        A list of tuples of task names, one per cluster in cluster order;
        noise tasks are left out.
    """
    groups = {}
    for task, cluster in clusters.items():
        if cluster is not None:
            groups.setdefault(cluster, []).append(task)
    return [tuple(groups[c]) for c in sorted(groups)]


def _check(num_features, num_train, num_validation, num_test, num_clusters,
           tasks_per_cluster, num_noise_tasks, perturbation, label_noise):
    for name, value, low in (
        ("num_features", num_features, 1),
        ("num_train", num_train, 1),
        ("num_validation", num_validation, 1),
        ("num_test", num_test, 1),
        ("num_clusters", num_clusters, 0),
        ("tasks_per_cluster", tasks_per_cluster, 1),
        ("num_noise_tasks", num_noise_tasks, 0),
    ):
        if value < low:
            raise ValueError(
                f"`{name}` must be at least {low}. Received: {name}={value}"
            )
    if num_clusters > num_features:
        raise ValueError(
            "`num_clusters` must be at most `num_features` (cluster "
            f"directions are orthonormal). Received: "
            f"num_clusters={num_clusters}, num_features={num_features}"
        )
    if num_clusters + num_noise_tasks == 0:
        raise ValueError(
            "There must be at least one task. Received: num_clusters=0, "
            "num_noise_tasks=0"
        )
    if perturbation < 0:
        raise ValueError(
            f"`perturbation` must be >= 0. Received: "
            f"perturbation={perturbation}"
        )
    if not 0 <= label_noise <= 0.5:
        raise ValueError(
            f"`label_noise` must be in [0, 0.5]. Received: "
            f"label_noise={label_noise}"
        )


def generate(*, seed=0, num_features=16, num_samples=3000, num_clusters=2,
             tasks_per_cluster=3, num_noise_tasks=1, perturbation=0.2,
             label_noise=0.05):
    """Inputs, labels of every task and the planted clusters, as NumPy.

    Returns:
        `(x, labels, clusters)`: float32 `(num_samples, num_features)`,
        `{task: int32 (num_samples,)}` and `{task: cluster or None}`.
    """
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_samples, num_features)).astype(np.float32)
    labels, clusters = {}, {}
    if num_clusters:
        q, _ = np.linalg.qr(rng.normal(size=(num_features, num_clusters)))
        for c in range(num_clusters):
            for k in range(tasks_per_cluster):
                e = rng.normal(size=num_features)
                direction = q[:, c] + perturbation * e / np.linalg.norm(e)
                flips = rng.random(num_samples) < label_noise
                name = f"c{c}_t{k}"
                labels[name] = ((x @ direction > 0) ^ flips).astype(np.int32)
                clusters[name] = c
    for k in range(num_noise_tasks):
        name = f"noise_{k}"
        labels[name] = rng.integers(0, 2, size=num_samples, dtype=np.int32)
        clusters[name] = None
    return x, labels, clusters


def load(*, tasks=None, seed=0, num_features=16, num_train=2000,
         num_validation=500, num_test=500, num_clusters=2,
         tasks_per_cluster=3, num_noise_tasks=1, perturbation=0.2,
         label_noise=0.05, data_dir=None):
    """Generates the planted tasks as `MultiTaskData`.

    Args:
        tasks: Task names to keep; `None` for all of them.
        seed: Seed of everything drawn.
        num_features: Input dimension d.
        num_train: Training examples.
        num_validation: Validation examples.
        num_test: Test examples.
        num_clusters: Clusters of related tasks.
        tasks_per_cluster: Tasks in each cluster.
        num_noise_tasks: Tasks whose labels are pure noise.
        perturbation: Size of each task's own change to its cluster's
            direction (0 makes a cluster's tasks equal up to label noise).
        label_noise: Share of each cluster task's labels flipped.
        data_dir: Ignored (the data is generated).

    Returns:
        A `MultiTaskData` named `"planted"`; `metadata["clusters"]` is the
        planted cluster of each selected task (None for noise tasks).
    """
    del data_dir  # Generated.
    _check(num_features, num_train, num_validation, num_test, num_clusters,
           tasks_per_cluster, num_noise_tasks, perturbation, label_noise)
    names = task_names(num_clusters, tasks_per_cluster, num_noise_tasks)
    tasks = base.resolve_tasks(tasks, names, names)
    x, labels, clusters = generate(
        seed=seed, num_features=num_features,
        num_samples=num_train + num_validation + num_test,
        num_clusters=num_clusters, tasks_per_cluster=tasks_per_cluster,
        num_noise_tasks=num_noise_tasks, perturbation=perturbation,
        label_noise=label_noise,
    )
    bounds = {"train": (0, num_train),
              "validation": (num_train, num_train + num_validation),
              "test": (num_train + num_validation, len(x))}
    datasets = {
        s: base.from_arrays(x[a:b], {t: labels[t][a:b] for t in tasks})
        for s, (a, b) in bounds.items()
    }
    return base.MultiTaskData(
        name="planted",
        tasks=tasks,
        num_classes={t: 2 for t in tasks},
        input_shape=(num_features,),
        description=(
            f"planted tasks: {num_clusters} clusters x {tasks_per_cluster} "
            f"related tasks + {num_noise_tasks} label-noise tasks, "
            f"{num_features} Gaussian features, seed {seed}"
        ),
        metadata={"clusters": {t: clusters[t] for t in tasks}},
        **datasets,
    )
