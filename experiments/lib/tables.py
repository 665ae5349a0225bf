"""Result tables shared by the experiment libraries: resumable CSVs of
one row per run, mean ± standard error, Markdown with paired SEs."""

import os

import numpy as np
import pandas as pd


def resume(path, columns):
    """The rows already in `path`, or an empty frame with `columns`."""
    if os.path.exists(path):
        return pd.read_csv(path)
    return pd.DataFrame(columns=columns)


def append(path, frame, row):
    """`frame` with `row` added, written to `path` (every row saved)."""
    frame = pd.concat([frame, pd.DataFrame([row])], ignore_index=True)
    frame.to_csv(path, index=False)
    return frame


def mean_se(values):
    """`(mean, standard error)` of finite values (SE NaN below two)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else (
        np.nan)
    return float(values.mean()), float(se)


def markdown(frame, digits=4):
    """A DataFrame as a Markdown table, `x` and `x se` as `x ± se`."""
    columns = [c for c in frame.columns if not c.endswith(" se")]
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "---|" * len(columns)]
    for _, row in frame.iterrows():
        cells = []
        for column in columns:
            value = row[column]
            if column in ("width", "seeds", "budget") and isinstance(
                    value, (int, float, np.integer, np.floating)):
                cells.append(str(int(value)))
            elif isinstance(value, (float, np.floating)):
                se = row.get(f"{column} se", np.nan)
                cell = f"{value:.{digits}f}"
                if np.isfinite(se):
                    star = "*" if abs(value) > 2 * se and (
                        "benefit" in column or "minus" in column) else ""
                    cell += f" ± {se:.{digits}f}{star}"
                cells.append(cell)
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(out_dir, name, summary):
    """Writes `summary` as `<out_dir>/<name>.md`; returns the table."""
    table = markdown(summary)
    with open(os.path.join(out_dir, f"{name}.md"), "w") as handle:
        handle.write(table)
    return table
