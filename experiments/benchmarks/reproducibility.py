"""Why the same code and seeds give other numbers on another machine.

Trains one network of the default digits job (the all-task network, one
seed, the default protocol) in a fresh process per numeric setting, twice
each, and prints a digest of its per-example test losses, its summed test
error and the wall time of the training, beside the default setting's:

* `default`: TensorFlow as installed (oneDNN custom operations on, every
  instruction set the CPU has, as many threads as cores).
* `isa=avx2`: oneDNN limited to AVX2 kernels (`ONEDNN_MAX_CPU_ISA=AVX2`):
  the same process on a CPU without AVX-512, as far as oneDNN is
  concerned. This is the "other machine", and what the commands pin
  (`tag_keras_entry.PINNED_KERNELS`).
* `onednn=off`: `TF_ENABLE_ONEDNN_OPTS=0` (Eigen kernels instead).
* `onednn=off isa=avx2`: both, to see whether oneDNN-off is independent
  of the CPU's instruction set.
* `threads=1`: one intra-op and one inter-op thread (what a Ray worker
  with one CPU runs).
* `onednn=off threads=1`, `onednn=off isa=avx2 threads=1`,
  `isa=avx2 threads=1`: which settings make the thread count irrelevant.
* `determinism`: `tf.config.experimental.enable_op_determinism()`.

Usage:
  python -m experiments.benchmarks.reproducibility \\
      --repro_out=experiments/benchmarks/results/reproducibility.md
"""

import hashlib
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

_OUT = flags.DEFINE_string("repro_out", None,
                           "Also write the table here (.md).")
_REPEATS = flags.DEFINE_integer("repro_repeats", 2, "Runs per setting.",
                                lower_bound=1)
_SEED = flags.DEFINE_integer("repro_seed", 0, "Training seed.")
_NETWORK = flags.DEFINE_enum(
    "repro_network", "digits", ["digits", "user_cnn"], "digits: the default "
    "job's all-task MLP; user_cnn: examples/user_cnn.py's all-task CNN "
    "(1 epoch).")
_SETTINGS = flags.DEFINE_list("repro_settings", None, "Settings to run "
                              "(default: all).")
_CHILD = flags.DEFINE_string("repro_child", None, "Internal: run one setting "
                             "(its JSON) in this process and print a line.")

#: Setting name -> (environment variables, threads, op determinism).
SETTINGS = {
    "default": ({}, None, False),
    "isa=avx2": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, None, False),
    "onednn=off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, None, False),
    "onednn=off isa=avx2": ({"TF_ENABLE_ONEDNN_OPTS": "0",
                             "ONEDNN_MAX_CPU_ISA": "AVX2"}, None, False),
    "threads=1": ({}, 1, False),
    "onednn=off threads=1": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, 1, False),
    "onednn=off isa=avx2 threads=1": ({"TF_ENABLE_ONEDNN_OPTS": "0",
                                       "ONEDNN_MAX_CPU_ISA": "AVX2"}, 1,
                                      False),
    "isa=avx2 threads=1": ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, 1, False),
    "determinism": ({}, None, True),
}


def _child(setting, seed):
    """Trains the network under `setting` (set before TensorFlow loads)."""
    _, threads, determinism = SETTINGS[setting]
    import tensorflow as tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    if determinism:
        tf.config.experimental.enable_op_determinism()
    trainer, tasks = _trainer(seed)
    start = time.perf_counter()
    network = trainer.network(tasks, seed)
    seconds = time.perf_counter() - start
    losses = b"".join(network.outcomes["test"][t][0].tobytes()
                      for t in network.tasks)
    error = sum(network.mean("test", t, "error") for t in network.tasks)
    return {"digest": hashlib.sha1(losses).hexdigest()[:12],
            "error": 100 * error, "seconds": seconds,
            "fit_seconds": network.seconds}


def _trainer(seed):
    """The network's `GroupTrainer` and its tasks."""
    if _NETWORK.value == "digits":
        from experiments.lib import training

        data = training.load_data("digits")
        config = training.default_config("digits")
        return (training.seeded_trainer(data, config, [seed], log=None),
                data.tasks)
    import importlib.util

    from tag_keras import train

    spec = importlib.util.spec_from_file_location(
        "user_cnn", os.path.join(os.path.dirname(__file__), "..", "..",
                                 "examples", "user_cnn.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return (train.GroupTrainer(module.build, module.data(), seeds=[seed],
                               fit_kwargs={"epochs": 1}, log=None),
            module.TASKS)


def _run(setting, seed):
    environment, _, _ = SETTINGS[setting]
    # "ALL": oneDNN's own default, every instruction set the CPU has (the
    # experiments package would otherwise pin AVX2).
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "ALL", **environment}
    if "TF_ENABLE_ONEDNN_OPTS" not in environment:
        env.pop("TF_ENABLE_ONEDNN_OPTS", None)
    out = subprocess.run(
        [sys.executable, "-m", "experiments.benchmarks.reproducibility",
         f"--repro_child={setting}", f"--repro_seed={seed}",
         f"--repro_network={_NETWORK.value}"], env=env, check=True,
        capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _CHILD.value:
        print(json.dumps(_child(_CHILD.value, _SEED.value)))
        return
    rows = {name: [] for name in _SETTINGS.value or SETTINGS}
    for _ in range(_REPEATS.value):  # interleaved, so load hits all alike
        for name in rows:
            rows[name].append(_run(name, _SEED.value))
            print(name, rows[name][-1], flush=True)
    base = rows["default"]
    base_seconds = sum(r["fit_seconds"] for r in base) / len(base)
    what = ("Digits all-task network, default protocol" if
            _NETWORK.value == "digits" else
            "examples/user_cnn.py's all-task CNN, 1 epoch")
    lines = [
        f"{what}, seed {_SEED.value}; "
        f"{_REPEATS.value} fresh processes per setting, interleaved; "
        f"{os.cpu_count()} CPUs.", "",
        "| setting | test-loss digest | summed test error % | same as "
        "default | repeats agree | fit time / default |",
        "|---|---|---|---|---|---|"]
    for name, runs in rows.items():
        digests = {r["digest"] for r in runs}
        seconds = sum(r["fit_seconds"] for r in runs) / len(runs)
        lines.append(
            f"| {name} | {', '.join(sorted(digests))} | "
            f"{runs[0]['error']:.4f} | "
            f"{'yes' if digests == {base[0]['digest']} else 'no'} | "
            f"{'yes' if len(digests) == 1 else 'no'} | "
            f"{seconds / base_seconds:.2f} |")
    text = "\n".join(lines)
    print(text)
    if _OUT.value:
        with open(_OUT.value, "w", encoding="utf-8") as handle:
            handle.write("Command: python -m experiments.benchmarks."
                         "reproducibility " + " ".join(sys.argv[1:])
                         + f"\n\n{text}\n")


if __name__ == "__main__":
    app.run(main)
