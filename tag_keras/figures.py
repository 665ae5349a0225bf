"""Figures of an affinity matrix (matplotlib, no TensorFlow).

A leaf module: `tag_keras.callbacks` draws `affinity.png` with it and
`tag-select --plot` too, so it needs only NumPy, pandas and matplotlib.
"""

import io

import numpy as np
import pandas as pd

#: Values are written in the cells up to this many tasks.
ANNOTATE_UP_TO = 12


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def column_centred(frame):
    """Each target column minus its mean over the other sources.

    Selection is invariant to adding a constant to a target's column (every
    group's score for that target moves by it), and a group's score for a
    target uses the other members only, so this view shows what the
    grouping sees: which sources help a target more than the others. The
    diagonal (self-affinity, not used unless singletons are allowed) is
    left blank.
    """
    values = frame.to_numpy(dtype=float).copy()
    np.fill_diagonal(values, np.nan)
    centred = values - np.nanmean(values, axis=0, keepdims=True)
    return pd.DataFrame(centred, index=frame.index, columns=frame.columns)


def affinity_figure(frame, title=None):
    """A matplotlib figure: the raw matrix beside its column-centred view.

    Rows are sources (whose gradient is applied), columns targets (whose
    loss is measured); a diverging colour map centred at 0, blue where the
    source lowers the target's loss (helps), red where it raises it. Cell
    values are written for up to `ANNOTATE_UP_TO` tasks; NaN cells (never
    measured) are grey.
    """
    pyplot = _pyplot()
    n = len(frame)
    size = 1.5 + 0.55 * n
    figure, axes = pyplot.subplots(1, 2, figsize=(2 * size + 1.5, size))
    panels = (
        (frame, "affinity (row = source, column = target)"),
        (column_centred(frame), "centred per target column (other sources)"),
    )
    for ax, (values, label) in zip(axes, panels):
        _heatmap(ax, figure, values, label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def _heatmap(ax, figure, frame, label):
    values = frame.to_numpy(dtype=float)
    finite = np.isfinite(values)
    limit = float(np.abs(values[finite]).max()) if finite.any() else 1.0
    limit = limit or 1.0
    cmap = _pyplot().get_cmap("RdBu").with_extremes(bad="lightgrey")
    image = ax.imshow(
        np.ma.masked_invalid(values), cmap=cmap, vmin=-limit, vmax=limit
    )
    n = len(frame)
    ax.set_xticks(range(n), [str(c) for c in frame.columns], rotation=90)
    ax.set_yticks(range(n), [str(i) for i in frame.index])
    ax.set_xlabel("target")
    ax.set_ylabel("source")
    ax.set_title(label, fontsize=9)
    if n <= ANNOTATE_UP_TO:
        for i in range(n):
            for j in range(n):
                if finite[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{values[i, j]:.2g}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white"
                        if abs(values[i, j]) > 0.6 * limit
                        else "black",
                    )
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)


def write_affinity_png(frame, path, title=None):
    """Writes `affinity_figure(frame)` as a PNG at `path`."""
    figure = affinity_figure(frame, title)
    figure.savefig(path, dpi=100)
    _pyplot().close(figure)


def affinity_png_bytes(frame):
    """The raw matrix alone as PNG bytes (the TensorBoard image)."""
    pyplot = _pyplot()
    n = len(frame)
    figure, ax = pyplot.subplots(figsize=(1.5 + 0.6 * n, 1.0 + 0.6 * n))
    _heatmap(ax, figure, frame, "affinity")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    pyplot.close(figure)
    return buffer.getvalue()
