"""One run owns a log_dir, and a resume loses no row in any callback order
(issue 28, items 1 and 2)."""

import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pandas as pd
import pytest

import tag_keras
from tag_keras import _lock
from tests.test_callbacks import _data
from tests.test_callbacks import _model

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _holder(directory):
    """A live process holding the lock of `directory`."""
    process = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom tag_keras import _lock\n"
         "_lock.acquire(sys.argv[1]); print('held', flush=True); "
         "time.sleep(120)", str(directory)],
        stdout=subprocess.PIPE, text=True, cwd=_ROOT,
        env=dict(os.environ, PYTHONPATH=_ROOT))
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_on_a_log_dir_in_use_fails_before_writing(tmp_path):
    holder = _holder(tmp_path)
    try:
        x, y = _data()
        with pytest.raises(tag_keras.DirectoryInUseError) as info:
            _model().fit(x, y, epochs=1, verbose=0,
                         callbacks=[tag_keras.AffinityLogger(tmp_path)])
        message = str(info.value)
        assert "\n" not in message and str(tmp_path) in message
        assert f"process {holder.pid}" in message
        assert os.listdir(tmp_path) == [_lock.LOCK_NAME]
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_owners_lock_is_taken_over_with_a_warning(tmp_path):
    holder = _holder(tmp_path)
    holder.kill()
    holder.wait()
    x, y = _data()
    with pytest.warns(UserWarning, match="taking over the lock"):
        _model().fit(x, y, epochs=1, verbose=0,
                     callbacks=[tag_keras.AffinityLogger(tmp_path)])
    assert (tmp_path / "affinity.csv").exists()
    # Released at the end of fit; the same process may fit again.
    assert not (tmp_path / _lock.LOCK_NAME).exists()
    _model().fit(x, y, epochs=1, verbose=0,
                 callbacks=[tag_keras.AffinityLogger(tmp_path)])


class _StopAfterStep(keras.callbacks.Callback):
    """Raises at the end of global step `step`, like a kill at that point."""

    def __init__(self, step):
        super().__init__()
        self.step, self.seen = step, -1

    def on_train_batch_end(self, batch, logs=None):
        self.seen += 1
        if self.seen == self.step:
            raise RuntimeError("killed")


@pytest.mark.parametrize("order", ["backup, kill, logger",
                                   "logger, backup, kill"])
@pytest.mark.parametrize("step", [0, 2, 4, 11])
def test_a_resume_writes_every_step_once_in_any_order(tmp_path, order, step):
    x, y = _data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"),
                                              save_freq=1)
    made = {"backup": backup, "kill": _StopAfterStep(step),
            "logger": tag_keras.AffinityLogger(tmp_path / "logs")}
    with pytest.raises(RuntimeError, match="killed"):
        _model().fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                     callbacks=[made[name] for name in order.split(", ")])
    resumed = _model()
    resumed.fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                callbacks=[backup, tag_keras.AffinityLogger(
                    tmp_path / "logs")])
    steps = pd.read_csv(tmp_path / "logs" / "affinity_steps.csv")
    # Every step the model counts, once (a mid-epoch backup restarts its
    # epoch's batches, so a resumed run counts more than 12).
    counted = int(resumed.optimizer.iterations.numpy())
    assert counted >= 12
    assert sorted(set(steps.step)) == list(range(counted))
    assert not steps.duplicated(["step", "source", "target"]).any()
    assert steps.groupby("step").size().eq(4).all()
    epochs = pd.read_csv(tmp_path / "logs" / "affinity_epochs.csv")
    assert epochs.groupby("epoch").size().to_dict() == {e: 4
                                                        for e in range(4)}


@pytest.mark.slow
def test_a_sigkill_between_the_backup_and_the_logger_loses_no_row(tmp_path):
    """A real kill -9 in the hook after the backup's, logger listed last."""
    script = (
        "import os, signal, sys, keras\n"
        "import tag_keras\n"
        "from tests.test_callbacks import _data, _model\n"
        "out, kill = sys.argv[1], int(sys.argv[2])\n"
        "class Kill(keras.callbacks.Callback):\n"
        "    seen = -1\n"
        "    def on_train_batch_end(self, batch, logs=None):\n"
        "        Kill.seen += 1\n"
        "        if Kill.seen == kill:\n"
        "            os.kill(os.getpid(), signal.SIGKILL)\n"
        "x, y = _data()\n"
        "backup = keras.callbacks.BackupAndRestore(out + '/backup', "
        "save_freq=1, double_checkpoint=True)\n"
        "_model().fit(x, y, batch_size=4, epochs=4, shuffle=False, "
        "verbose=0, callbacks=[backup, Kill(), "
        "tag_keras.AffinityLogger(out + '/logs')])\n")
    env = dict(os.environ, PYTHONPATH=_ROOT)
    killed = subprocess.run([sys.executable, "-c", script, str(tmp_path),
                             "4"], cwd=_ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path),
                           "-1"], cwd=_ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = pd.read_csv(tmp_path / "logs" / "affinity_steps.csv")
    # Killed after step 4's backup (epoch 1): epoch 1 runs again from
    # step 5, so the model counts 12 + 2 steps; each is written once.
    assert sorted(set(steps.step)) == list(range(14))
    assert not steps.duplicated(["step", "source", "target"]).any()
    assert np.isfinite(steps.affinity).all()


@pytest.mark.parametrize("torn", ["3,0,a,b,0.1\x00\x00\x00", "x3,0,a,b,0.1",
                                  "3,0,a"])
def test_a_torn_last_line_is_dropped_with_a_warning_on_resume(tmp_path,
                                                              torn):
    x, y = _data()
    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    with pytest.raises(RuntimeError, match="killed"):
        _model().fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                     callbacks=[backup, tag_keras.AffinityLogger(tmp_path),
                                _StopAfterStep(4)])
    with open(tmp_path / "affinity_steps.csv", "a") as handle:
        handle.write(torn)  # What a kill in the middle of a write leaves.
    with pytest.warns(UserWarning, match=r"affinity_steps.csv, line \d+: "
                      "dropped a torn"):
        _model().fit(x, y, batch_size=4, epochs=4, shuffle=False, verbose=0,
                     callbacks=[backup, tag_keras.AffinityLogger(tmp_path)])
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert sorted(set(steps.step)) == list(range(12))
    assert not steps.duplicated(["step", "source", "target"]).any()


def test_a_fresh_run_truncates_a_garbled_epoch_file(tmp_path):
    for name in ("affinity_epochs.csv", "affinity_steps.csv"):
        (tmp_path / name).write_text("epoch,source,target,affinity\n"
                                     "0,a,b,0.5\n\x00\x00garbage")
    x, y = _data()
    _model().fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0,
                 callbacks=[tag_keras.AffinityLogger(tmp_path)])
    epochs = pd.read_csv(tmp_path / "affinity_epochs.csv")
    assert list(epochs.columns) == ["epoch", "source", "target", "affinity"]
    assert len(epochs) == 4 and set(epochs.epoch) == {0}
    steps = pd.read_csv(tmp_path / "affinity_steps.csv")
    assert list(steps.columns)[0] == "step" and len(steps) == 3 * 4
