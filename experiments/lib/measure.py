"""One all-task network measuring inter-task affinity (`run_affinity`).

One network for every task, trained with the protocol of
`experiments.lib.training`, as a `tag_keras.TaskAffinityModel` that
measures affinity every `every_n_steps` steps with `affinity_method`
(lookahead, first_order or cosine; cosine uses kernels only, as the
original release), trained with plain MTL or a `tag_keras.mtl` method
(`training_method`: mtl, uw, gradnorm, pcgrad).

Writes in `out_dir`: `affinity/` (AffinityLogger: affinity.csv,
affinity_epochs.csv, affinity_steps.csv, TensorBoard events),
`tensorboard/` (losses and metrics), `history.csv` (per epoch),
`metrics.csv` (task, test_error, validation_loss) and `run.json`.
"""

import dataclasses
import json
import os

import pandas as pd

from experiments.lib import distribution as distribution_lib
from experiments.lib import training

AFFINITY_METHODS = ("lookahead", "first_order", "cosine")
TRAINING_METHODS = ("mtl", "uw", "gradnorm", "pcgrad")

def make_training_method(training_method, *, gradnorm_alpha=1.5):
    """The `tag_keras.mtl` method named `training_method` (None for mtl)."""
    if training_method not in TRAINING_METHODS:
        raise ValueError(
            f"`training_method` must be one of {list(TRAINING_METHODS)}. "
            f"Received: training_method={training_method!r}")
    if training_method == "mtl":
        return None
    from tag_keras import mtl

    if training_method == "uw":
        return mtl.UncertaintyWeights()
    if training_method == "gradnorm":
        return mtl.GradNorm(alpha=gradnorm_alpha)
    return mtl.PCGrad()


def measure(data, config, out_dir, *, affinity_method="lookahead",
            training_method="mtl", gradnorm_alpha=1.5, every_n_steps=None,
            tensorboard=True, write_steps=True, distribution=None,
            return_model=False):
    """Trains all tasks of `data` together, measuring affinity.

    Args:
        data: A `MultiTaskData`.
        config: A `training.TrainConfig`.
        out_dir: Output directory (see the module docstring).
        affinity_method: "lookahead", "first_order" or "cosine".
        training_method: "mtl", "uw", "gradnorm" or "pcgrad".
        gradnorm_alpha: GradNorm's alpha.
        every_n_steps: Measure every this many steps (default
            `config.affinity_every_n_steps`).
        tensorboard: Also write Keras's TensorBoard logs.
        write_steps: Write `affinity/affinity_steps.csv`.
        distribution: A `tf.distribute.Strategy` to train under
            (`distribution.make_distribution`); None for none. Under several
            workers only the chief writes `out_dir`.
        return_model: Also return the trained model (the all-task network,
            its best epoch's weights restored).

    Returns:
        `(TrainResult, affinity DataFrame)`; the matrix is the mean over the
        whole run, as in `affinity/affinity.csv`. With `return_model`,
        `(TrainResult, affinity, model)`.
    """
    if affinity_method not in AFFINITY_METHODS:
        raise ValueError(
            f"`affinity_method` must be one of {list(AFFINITY_METHODS)}. "
            f"Received: affinity_method={affinity_method!r}")
    if every_n_steps is None:
        every_n_steps = config.affinity_every_n_steps
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        result, model = _measure_into(
            data, config, writable, affinity_method=affinity_method,
            training_method=training_method, gradnorm_alpha=gradnorm_alpha,
            every_n_steps=every_n_steps, tensorboard=tensorboard,
            write_steps=write_steps, distribution=distribution)
    if return_model:
        return result, result.affinity, model
    return result, result.affinity


def _measure_into(data, config, out_dir, *, affinity_method,
                  training_method, gradnorm_alpha, every_n_steps,
                  tensorboard, write_steps, distribution):
    import keras

    import tag_keras

    os.makedirs(out_dir, exist_ok=True)
    callbacks = [
        tag_keras.AffinityLogger(os.path.join(out_dir, "affinity"),
                                 write_steps=write_steps),
        keras.callbacks.CSVLogger(os.path.join(out_dir, "history.csv")),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(
            os.path.join(out_dir, "tensorboard")))
    result, model = training.train_network(
        data, config, model_cls=tag_keras.TaskAffinityModel,
        callbacks=callbacks, distribution=distribution,
        affinity_every_n_steps=every_n_steps,
        affinity_method=affinity_method,
        cosine_kernels_only=affinity_method == "cosine",
        training_method=make_training_method(
            training_method, gradnorm_alpha=gradnorm_alpha))
    pd.DataFrame({
        "task": list(result.tasks),
        "test_error": [result.test_error[t] for t in result.tasks],
        "validation_loss": [result.validation_loss[t] for t in result.tasks],
    }).to_csv(os.path.join(out_dir, "metrics.csv"), index=False)
    with open(os.path.join(out_dir, "run.json"), "w") as handle:
        json.dump({
            "dataset": data.name, "description": data.description,
            "tasks": list(data.tasks),
            "affinity_method": affinity_method,
            "training_method": training_method,
            "affinity_every_n_steps": every_n_steps,
            "distribution": distribution_lib.distribution_info(distribution),
            "config": dataclasses.asdict(config),
            "epochs": result.epochs, "best_epoch": result.best_epoch,
            "seconds": result.seconds,
            "total_test_error_percent": 100 * sum(result.test_error.values()),
        }, handle, indent=2)
    return result, model
