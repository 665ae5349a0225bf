"""File writing shared by the loggers and the groups document.

A leaf module (standard library only): CSV files that keep the rows a
resumed run already wrote and flush every row, and atomic replacement
that respects the umask.
"""

import csv
import io
import os
import tempfile


def replace_atomically(path, text):
    """Writes `text` to `path` atomically (temp file + rename).

    The file gets the permissions `open` would give it (0666 less the
    umask), not `mkstemp`'s 0600.
    """
    directory = os.path.dirname(os.fspath(path)) or "."
    handle, temp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    with os.fdopen(handle, "w", newline="") as out:
        out.write(text)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temp, 0o666 & ~umask)
    os.replace(temp, path)


class RowFile:
    """An append-only CSV file whose rows are flushed as they are written.

    Args:
        path: The file.
        header: Its column names.
        keep: Called with each existing row (a list of strings) when the
            file is opened; rows it rejects are dropped (a resumed run
            rewrites them). None keeps no row: the file starts anew.
    """

    def __init__(self, path, header, keep=None):
        self.path = os.fspath(path)
        kept = []
        if keep is not None and os.path.exists(self.path):
            with open(self.path, newline="") as handle:
                kept = [r for r in list(csv.reader(handle))[1:]
                        if r and keep(r)]
        text = io.StringIO()
        csv.writer(text).writerows([header, *kept])
        replace_atomically(self.path, text.getvalue())
        self._handle = open(self.path, "a", newline="")
        self._writer = csv.writer(self._handle)

    def write(self, rows):
        """Appends `rows` and flushes."""
        self._writer.writerows(rows)
        self._handle.flush()

    def close(self):
        self._handle.close()
