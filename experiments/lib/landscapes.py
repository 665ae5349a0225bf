"""Loss landscapes of a multi-task network (transference paper, §4.2).

Trains the all-task network and, at the end of the epochs asked for,
writes on one fixed training batch: `lines_epoch<k>.csv` / `.png` (each
task's loss along the shared update of each task's gradient and of their
sum, to three times the step) and `surface_epoch<k>.csv` / `.png` (each
task's loss on two random filter-normalised directions, ±0.1 of each
filter's norm).
"""

import os


def write(model, batch, out_dir, label, *, points=21, seed=0):
    """Writes both landscapes of `model` on `batch` under `label`."""
    from tag_keras import diagnostics

    lines = diagnostics.loss_along_updates(model, batch, points=31)
    lines.to_csv(os.path.join(out_dir, f"lines_{label}.csv"), index=False)
    surface = diagnostics.loss_surface(model, batch, points=points,
                                       seed=seed)
    surface.to_csv(os.path.join(out_dir, f"surface_{label}.csv"),
                   index=False)
    _plot_lines(lines, os.path.join(out_dir, f"lines_{label}.png"))
    _plot_surface(surface, os.path.join(out_dir, f"surface_{label}.png"))
    return lines, surface


def run(data, config, out_dir, *, at_epochs=(1,), points=21, log=print):
    """Trains the all-task network; writes the landscapes at `at_epochs`
    (1-based epoch ends) and at the end of training."""
    import keras

    from experiments.lib import training

    os.makedirs(out_dir, exist_ok=True)
    batch = next(data.batches("train", config.batch_size).as_numpy_iterator())
    at = set(at_epochs)

    class Landscapes(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 in at:
                log(f"landscapes at epoch {epoch + 1}")
                write(self.model, batch, out_dir, f"epoch{epoch + 1}",
                      points=points)

    _, model = training.train_network(data, config,
                                      callbacks=[Landscapes()])
    log("landscapes at the end (best epoch's weights)")
    return write(model, batch, out_dir, "final", points=points)


def _plot_lines(lines, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    targets = list(dict.fromkeys(lines["target"]))
    figure, axes = plt.subplots(1, len(targets), figsize=(
        4.5 * len(targets), 3.6), squeeze=False)
    for axis, target in zip(axes[0], targets):
        for source, group in lines[lines["target"] == target].groupby(
                "source", sort=False):
            axis.plot(group["step"], group["loss"], label=f"step on {source}")
        axis.axvline(1.0, color="grey", linewidth=0.5)
        axis.set_xlabel("steps along the update")
        axis.set_ylabel(f"{target} loss")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_surface(surface, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    tasks = list(dict.fromkeys(surface["task"]))
    figure, axes = plt.subplots(1, len(tasks), figsize=(
        4.2 * len(tasks), 3.6), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        grid = surface[surface["task"] == task].pivot(index="b", columns="a",
                                                      values="loss")
        contour = axis.contourf(grid.columns, grid.index, grid.to_numpy(),
                                levels=20, cmap="viridis")
        axis.plot([0], [0], "w+")
        figure.colorbar(contour, ax=axis)
        axis.set_title(f"{task} loss")
        axis.set_xlabel("direction 1")
        axis.set_ylabel("direction 2")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

