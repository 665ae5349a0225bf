"""Reading back every CSV the package writes, task names kept as text.

Task names are whatever the model's outputs are called: `1`, `01`,
`1.0`, `NA`, `nan`, `null` and the empty name are all valid Keras output
names. `pandas.read_csv` with its defaults turns them into numbers or
NaN, so the package reads its files here: the name columns (and the
header of the matrix) as the exact strings written, the value columns as
numbers, an empty value cell as NaN. Use these rather than a bare
`pd.read_csv`.
"""

import csv
import math
import os
from collections.abc import Sequence

import pandas as pd

from tag_keras import _errors

#: The name columns of each long table the package writes.
NAME_COLUMNS = {
    "affinity_steps.csv": ("source", "target"),
    "affinity_epochs.csv": ("source", "target"),
    "group_affinity.csv": ("sources", "target"),
    "performance.csv": ("group", "task"),
}


def read_affinity(path: str | os.PathLike) -> pd.DataFrame:
    """An affinity matrix CSV (`affinity.csv`, `affinity_stderr.csv`).

    The first column holds the source task names (header `source`), the
    header the target names. Returns a float DataFrame indexed by source
    with one column per target, names exactly as written; empty cells are
    NaN.

    Raises:
        InputError: The file is empty, ragged or holds a value that is not
            a number (naming the file and the line).
    """
    rows = _rows(path)
    if not rows:
        raise _errors.InputError(
            f"Cannot read {path} as CSV: the file is empty"
        )
    header, body = rows[0], rows[1:]
    values, index = [], []
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise _errors.InputError(
                f"{path}, line {number}: {len(row)} fields, the header has "
                f"{len(header)}"
            )
        index.append(row[0])
        values.append([_number(v, path, number) for v in row[1:]])
    frame = pd.DataFrame(
        values,
        index=pd.Index(index, dtype=object, name=header[0] or None),
        columns=pd.Index(header[1:], dtype=object),
        dtype=float,
    )
    return frame


def read_table(
    path: str | os.PathLike, name_columns: Sequence[str]
) -> pd.DataFrame:
    """A long table (`affinity_steps.csv`, `performance.csv`, ...).

    `name_columns` are kept as the strings written (never NaN); every
    other column is read as numbers, an empty cell as NaN.
    """
    rows = _rows(path)
    if not rows:
        raise _errors.InputError(
            f"Cannot read {path} as CSV: the file is empty"
        )
    header = rows[0]
    columns: dict[str, list] = {name: [] for name in header}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise _errors.InputError(
                f"{path}, line {number}: {len(row)} fields, the header has "
                f"{len(header)}"
            )
        for name, value in zip(header, row):
            columns[name].append(
                value if name in name_columns else _number(value, path, number)
            )
    frame = pd.DataFrame(columns)
    for name in header:
        if name in name_columns:
            frame[name] = frame[name].astype(object)
        elif (
            len(frame)
            and not frame[name].isna().any()
            and all(float(v).is_integer() for v in frame[name])
        ):
            frame[name] = frame[name].astype("int64")
    return frame


def _rows(path):
    try:
        with open(path, newline="") as handle:
            return list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise _errors.InputError(
            f"Cannot read {path} as CSV: {' '.join(str(error).split())}"
        ) from None


def _number(value, path, line):
    if value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise _errors.InputError(
            f"{path}, line {line}: {value!r} is not a number"
        ) from None
