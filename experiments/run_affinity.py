"""Trains all tasks together and measures inter-task affinity.

One network for every task, trained with the protocol of
`experiments.training` (SGD with momentum, LR halving, early stopping with
best-weights restore), as a `tag_keras.TaskAffinityModel` that measures
affinity every `--affinity_every_n_steps` steps with `--affinity_method`
(lookahead, first_order or cosine; cosine uses kernels only, as the
original release). `--training_method` trains with plain MTL or with an
augmentation of `tag_keras.mtl` (uw, gradnorm, pcgrad).

    python -m experiments.run_affinity --dataset=digits --out_dir=runs/aff
    tag-select --affinity=runs/aff/affinity/affinity.csv --num_groups=2,3,4

Writes in `--out_dir`: `affinity/` (AffinityLogger: affinity.csv,
affinity_epochs.csv, affinity_steps.csv, TensorBoard events),
`tensorboard/` (losses and metrics), `history.csv` (per epoch),
`metrics.csv` (task, test_error, validation_loss) and `run.json`.
`--distribution` trains under a `tf.distribute` strategy (the batch size is
global; with several workers only the chief writes).
"""

import dataclasses
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import pandas as pd  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments import distribution as distribution_lib  # noqa: E402
from experiments import training  # noqa: E402

AFFINITY_METHODS = ("lookahead", "first_order", "cosine")
TRAINING_METHODS = ("mtl", "uw", "gradnorm", "pcgrad")

_COMMON = common_flags.define_common_flags()
_AFFINITY_METHOD = flags.DEFINE_enum(
    "affinity_method", "lookahead", AFFINITY_METHODS,
    "How affinity is measured.")
_TRAINING_METHOD = flags.DEFINE_enum(
    "training_method", "mtl", TRAINING_METHODS,
    "mtl: equal loss weights; uw: uncertainty weights; gradnorm; pcgrad.")


def make_strategy(training_method, *, gradnorm_alpha=1.5):
    """The `tag_keras.mtl` strategy for `training_method` (None for mtl)."""
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
            tensorboard=True, write_steps=True, distribution=None):
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

    Returns:
        `(TrainResult, affinity DataFrame)`; the matrix is the mean over the
        whole run, as in `affinity/affinity.csv`.
    """
    if affinity_method not in AFFINITY_METHODS:
        raise ValueError(
            f"`affinity_method` must be one of {list(AFFINITY_METHODS)}. "
            f"Received: affinity_method={affinity_method!r}")
    if every_n_steps is None:
        every_n_steps = config.affinity_every_n_steps
    with distribution_lib.output_dir(out_dir, distribution) as writable:
        result = _measure_into(
            data, config, writable, affinity_method=affinity_method,
            training_method=training_method, gradnorm_alpha=gradnorm_alpha,
            every_n_steps=every_n_steps, tensorboard=tensorboard,
            write_steps=write_steps, distribution=distribution)
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
        strategy=make_strategy(training_method,
                               gradnorm_alpha=gradnorm_alpha))
    del model
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
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        distribution = common_flags.distribution_from_flags(_COMMON)
        data = common_flags.data_from_flags(_COMMON)
    except training.DataError as error:
        print(f"run_affinity: error: {error}", file=sys.stderr)
        return 1
    config = common_flags.config_from_flags(_COMMON)
    out_dir = _COMMON.out_dir_or("runs/affinity")
    print(f"{data.description}; {training.describe_config(config)}"
          f"{distribution_lib.describe_distribution(distribution)}")
    print(f"Training {len(data.tasks)} tasks together "
          f"({_TRAINING_METHOD.value}), measuring {_AFFINITY_METHOD.value} "
          f"affinity every {config.affinity_every_n_steps} steps ...")
    result, affinity = measure(
        data, config, out_dir, affinity_method=_AFFINITY_METHOD.value,
        training_method=_TRAINING_METHOD.value,
        gradnorm_alpha=_COMMON.gradnorm_alpha.value,
        distribution=distribution)
    print(f"{result.epochs} epochs (best {result.best_epoch}) in "
          f"{result.seconds:.1f} s; total test error "
          f"{100 * sum(result.test_error.values()):.2f}%")
    print(affinity.round(4).to_string())
    if distribution_lib.is_chief(distribution):
        print(f"Wrote {out_dir}/affinity/, tensorboard/, history.csv, "
              "metrics.csv, run.json")
    return 0


if __name__ == "__main__":
    app.run(main)
