"""What the trajectory measures cost, relative to one training epoch.

Side by side in one process, on the digits model (LeNet, width 16, batch
32, the bundled 8×8 digits, 9 tasks):

  * one training epoch of `fit` (median of `--timed_calls`);
  * each measure for one task on the whole training set (1,078 examples;
    the paper's 2,048 cap does not bind), traced once and then timed
    (median of `--timed_calls` calls);
  * `fit` for `--fit_epochs` epochs with `TrajectoryLogger` measuring every
    epoch, in several settings, against the same fit without it.

Usage:
  python -m experiments.benchmarks.diagnostics_cost --fit_epochs=4

Timings on a shared 2-core machine are noisy: read the ratios.
"""

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_REPEATS = flags.DEFINE_integer("timed_calls", 3, "Timed calls per measure.",
                                lower_bound=1)
_EPOCHS = flags.DEFINE_integer("fit_epochs", 4, "Epochs per fit in the logger "
                               "table.", lower_bound=1)
_TASK = "is_even"


def _model(data):
    import keras

    from experiments.lib import models

    keras.utils.set_random_seed(0)
    model = models.build_model(data, width=16)
    model.compile(optimizer=keras.optimizers.SGD(0.02, momentum=0.9),
                  **models.compile_kwargs(data))
    return model


def _median_seconds(function, repeats):
    function()                                   # traces
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _fit_seconds(data, epochs, callbacks):
    model = _model(data)
    train = data.batches("train", 32, shuffle=True, seed=0)
    model.fit(train, epochs=1, verbose=0)        # traces the step
    start = time.perf_counter()
    model.fit(train, epochs=epochs, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def _measure_table(data):
    """Each measure alone, against one training epoch."""
    from tag_keras import _data
    from tag_keras.tasks import labels as labels_lib
    from tag_keras.tasks import view as view_lib
    from tag_keras.diagnostics import conflict
    from tag_keras.diagnostics import per_example
    from tag_keras.diagnostics import worst_case

    model = _model(data)
    train = data.batches("train", 32, shuffle=True, seed=0)
    model.fit(train, epochs=1, verbose=0)
    epoch = _median_seconds(lambda: model.fit(train, epochs=1, verbose=0),
                            _REPEATS.value)
    print(f"digits, 9 tasks: one training epoch {1000 * epoch:.0f} ms "
          f"(median of {_REPEATS.value})\n")
    source = data.batches("train", 256)
    view = view_lib.TaskView(model, source)
    x, y = labels_lib.task_examples(source, view.tasks, _TASK, 2048)
    batches = list(_data.batches(source, 128, view.tasks, 16))
    measures = [
        ("gradient_conflict (all tasks, batch 128)",
         lambda: conflict.gradient_conflict_of(view, batches, view.tasks)),
        ("sharpness (rho 1e-3, batch 128, 20 steps)",
         lambda: worst_case.sharpness_of(view, _TASK, x, y, 1e-3, 128, 20)),
        ("sharpness (5 steps)",
         lambda: worst_case.sharpness_of(view, _TASK, x, y, 1e-3, 128, 5)),
        ("fisher_trace (exact, batch 16)",
         lambda: per_example.fisher_trace_of(view, _TASK, x, 16)),
        ("gradient_coherence (batch 128)",
         lambda: per_example.gradient_coherence_of(view, _TASK, x, y, 128)),
        ("gradient_coherence (batch 16)",
         lambda: per_example.gradient_coherence_of(view, _TASK, x, y, 16)),
    ]
    print(f"| measure, one task ({len(y)} examples) | ms | epochs |")
    print("|---|---|---|")
    for name, function in measures:
        seconds = _median_seconds(function, _REPEATS.value)
        print(f"| {name} | {1000 * seconds:.0f} | {seconds / epoch:.2f} |")


def _logger_table(data):
    """`TrajectoryLogger` settings: a whole fit and its marginal cost."""
    from tag_keras import callbacks as callbacks_lib

    source = data.batches("train", 256)
    epochs = _EPOCHS.value
    test = data.batches("test", 512)
    settings = [
        ("loss, error, conflict; all 9 tasks",
         dict(measures=("loss", "error", "conflict"))),
        ("loss, error, conflict; all 9 tasks, 256 examples",
         dict(measures=("loss", "error", "conflict"), max_samples=256)),
        ("all measures, one task, paper settings", dict(tasks=[_TASK])),
        ("all measures, one task, 256 examples, 5 sharpness steps",
         dict(tasks=[_TASK], max_samples=256, sharpness_steps=5)),
        ("all measures, all 9 tasks, 256 examples, 5 sharpness steps",
         dict(max_samples=256, sharpness_steps=5)),
    ]
    with tempfile.TemporaryDirectory() as directory:
        plain = [_fit_seconds(data, e, []) for e in (epochs, 2 * epochs)]
        print(f"\nfit without a logger: {plain[0]:.2f} s ({epochs} epochs), "
              f"{plain[1]:.2f} s ({2 * epochs})\n")
        print(f"| TrajectoryLogger every epoch | s, {epochs} epochs | "
              f"whole fit / plain ({epochs} epochs) | marginal per epoch / "
              "plain |")
        print("|---|---|---|---|")
        for index, (name, kwargs) in enumerate(settings):
            seconds = []
            for count in (epochs, 2 * epochs):
                logger = callbacks_lib.TrajectoryLogger(
                    os.path.join(directory, f"{index}_{count}"), source,
                    test, tensorboard=False, **kwargs)
                seconds.append(_fit_seconds(data, count, [logger]))
            marginal = (seconds[1] - seconds[0]) / (plain[1] - plain[0])
            print(f"| {name} | {seconds[0]:.2f} | "
                  f"{seconds[0] / plain[0]:.2f}x | {marginal:.1f}x |")


def main(argv):
    del argv
    from experiments import data as data_lib

    data = data_lib.load_dataset("digits")
    _measure_table(data)
    _logger_table(data)


if __name__ == "__main__":
    app.run(main)
