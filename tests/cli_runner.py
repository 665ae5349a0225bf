"""A command's `main` run inside the test process, as `app.run` runs it.

The checks before any training (bad flags, data, groups, models) need
no process of their own: each subprocess spent most of its time
importing TensorFlow. The commands' process-level behaviour (exit
statuses through `sys.exit`, Ctrl-C, `--help`, stray arguments) is
still tested on real processes.
"""

import contextlib
import importlib
import io
import signal
import subprocess
import sys

from absl import flags

from tag_keras.train import executor_flags


def as_from_a_terminal():
    """`preexec_fn` for a command the test interrupts: SIGINT at its
    default. A shell's background job (`cmd &`) starts with SIGINT
    ignored, and a command started from it would inherit that and never
    see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_main(module_name, program, *args):
    """`program --flags...` through `module_name.main`; a
    `CompletedProcess` with main's return value as its status.

    The command's module is imported afresh into a flag registry of its
    own, as in its own process (the experiments' binaries define flags
    of the same names), and the registry is restored afterwards; so are
    the executor flags, which are defined once per process.
    """
    values = flags.FLAGS
    saved = flags.FlagValues()
    saved.append_flag_values(values)
    values.remove_flag_values(saved)
    holders = dict(executor_flags._HOLDERS)
    executor_flags._HOLDERS.clear()
    kept = sys.modules.pop(module_name, None)
    out, err = io.StringIO(), io.StringIO()
    try:
        cli = importlib.import_module(module_name)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            values([program, *args])
            status = cli.main([program])
    finally:
        sys.modules.pop(module_name, None)
        if kept is not None:
            sys.modules[module_name] = kept
        executor_flags._HOLDERS.clear()
        executor_flags._HOLDERS.update(holders)
        own = flags.FlagValues()
        own.append_flag_values(values)
        values.remove_flag_values(own)
        values.append_flag_values(saved)
        values.unparse_flags()
    return subprocess.CompletedProcess([program, *args], status,
                                       out.getvalue(), err.getvalue())
