"""File writing shared by the loggers and the groups document.

A leaf module (standard library only): CSV files that keep the rows a
resumed run already wrote and flush every row, and atomic replacement
that respects the umask.
"""

import contextlib
import csv
import io
import os
import secrets
import warnings


def replace_atomically(path, data):
    """Writes `data` (text or bytes) to `path` atomically (temp + rename).

    The temporary file is created with `os.open(..., 0o666)`, so it gets
    the permissions `open` would give it (0666 less the umask) without
    touching the process-wide umask. If the write fails (a full disk), the
    temporary file is removed and the `OSError` names `path`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    payload = data.encode("utf-8") if isinstance(data, str) else data
    while True:
        temp = os.path.join(
            directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp"
        )
        try:
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
        except OSError as error:
            raise OSError(
                error.errno, f"Cannot write {path}: {error.strerror}"
            ) from None
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
        os.replace(temp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            os.remove(temp)
        if isinstance(error, OSError):
            raise OSError(
                error.errno, f"Cannot write {path}: {error.strerror}"
            ) from None
        raise


class RowFile:
    """An append-only CSV file whose rows are flushed as they are written.

    Args:
        path: The file.
        header: Its column names.
        keep: Called with each existing row (a list of strings) when the
            file is opened; rows it rejects are dropped (a resumed run
            rewrites them). None keeps no row: the file starts anew, and
            what was there is never read. A row that cannot be judged (a
            torn or garbled line: NUL bytes, the wrong number of fields, a
            field `keep` cannot parse) is dropped with a warning naming
            the file and the line.
    """

    def __init__(self, path, header, keep=None):
        self.path = os.fspath(path)
        kept = []
        if keep is not None and os.path.exists(self.path):
            kept = self._kept_rows(header, keep)
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        replace_atomically(self.path, text.getvalue())
        # Kept open: rows are appended one by one until close().
        self._handle = open(self.path, "a", newline="")  # noqa: SIM115
        self._writer = csv.writer(self._handle)

    def _kept_rows(self, header, keep):
        with open(self.path, newline="", errors="replace") as handle:
            lines = handle.read().splitlines()
        kept = []
        for number, line in enumerate(lines[1:], start=2):
            if not line:
                continue
            try:
                if "\0" in line:
                    raise ValueError("NUL bytes")
                row = next(csv.reader([line]))
                if len(row) != len(header):
                    raise ValueError(
                        f"{len(row)} fields, expected {len(header)}"
                    )
                if keep(row):
                    kept.append(row)
            except (ValueError, csv.Error) as error:
                warnings.warn(
                    f"{self.path}, line {number}: dropped a torn or garbled "
                    f"row ({' '.join(str(error).split())}): {line[:80]!r}",
                    stacklevel=4,
                )
        return kept

    def write(self, rows):
        """Appends `rows` and flushes; a failed write names the file."""
        try:
            self._writer.writerows(rows)
            self._handle.flush()
        except OSError as error:
            raise OSError(
                error.errno, f"Cannot write {self.path}: {error.strerror}"
            ) from None

    def close(self):
        self._handle.close()
