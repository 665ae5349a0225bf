"""How decisive IT-MTL's choices are: per-step candidate scores.

Trains IT-MTL (each task alone and both together) and IT-UW-PCGrad (all
and PCGrad, uncertainty-weighted) on MultiDigits once, records every
step's candidate scores, and reports:
  * for IT-MTL, the margin of the all-task candidate over the best
    single-task candidate;
  * for IT-UW-PCGrad, on how many steps the two candidates differ at all
    (PCGrad equals the sum when no gradients conflict; those "wins" are
    ties broken by rounding) and which candidate won those steps.

    python -m experiments.benchmarks.it_mtl_margins --epochs=4
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
import numpy as np  # noqa: E402

from experiments import common_flags  # noqa: E402
from experiments.lib import training  # noqa: E402

# --epochs (default 4 here) and --seed (weights, shuffling) are the
# binaries' common flags.
_COMMON = common_flags.define_common_flags(("epochs", "seed"))
_TIE = 1e-5  # relative score difference below which candidates coincide


def record_scores(data, config, strategy):
    """Trains with `strategy`; returns the `[steps, candidates]` scores."""
    import keras

    import tag_keras

    class Recorder(keras.callbacks.Callback):
        rows = []

        def on_train_batch_end(self, batch, logs=None):
            self.rows.append(strategy.last_scores.numpy().copy())

    recorder = Recorder()
    recorder.rows = []
    training.train_network(data, config, model_cls=tag_keras.TaskAffinityModel,
                           affinity_every_n_steps=0, training_method=strategy,
                           callbacks=[recorder])
    return np.array(recorder.rows)


def main(argv):
    del argv
    from tag_keras import mtl

    data = training.load_data("multi_digits")
    config = training.default_config(
        "multi_digits", epochs=_COMMON.epochs.value or 4,
        seed=_COMMON.seed.value)
    left, right = data.tasks
    scores = record_scores(data, config, mtl.ITMTL([(left,), (right,),
                                                    "all"]))
    margin = scores[:, 2] - scores[:, :2].max(axis=1)
    print(f"IT-MTL: {len(scores)} steps; 'all' beat both single tasks on "
          f"{(margin > 0).sum()}; margin median {np.median(margin):.4f}, "
          f"min {margin.min():.4f}")
    scores = record_scores(data, config, mtl.ITMTL(
        ["all", "pcgrad"], loss_weighting=mtl.UncertaintyWeights()))
    difference = scores[:, 1] - scores[:, 0]
    relative = np.abs(difference) / np.abs(scores).max(axis=1)
    differ = relative > _TIE
    print(f"IT-UW-PCGrad: {len(scores)} steps; the candidates differ on "
          f"{differ.sum()} (relative score difference > {_TIE:g}); PCGrad "
          f"won {(difference[differ] > 0).sum()} of those")


if __name__ == "__main__":
    app.run(main)
