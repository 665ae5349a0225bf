"""The experiments: thin absl binaries over a flag-free library.

* `*.py` here: one binary each (`python -m experiments.NAME`): they parse
  flags (`common_flags` defines the shared ones, once per process) and call
  `experiments.lib`; no binary imports another.
* `lib/`: what the binaries run, as functions tests call directly.
* `data/`: the datasets behind `data.load_dataset`.
* `benchmarks/`: benchmark binaries and their committed `results/`.

May import `tag_keras` (its public names), TensorFlow, Keras,
tensorflow-datasets and scikit-learn; `tag_keras` never imports this
package.
"""

import tag_keras_entry

# The kernels every command pins (oneDNN's instruction set), so a table
# repeats across CPUs: see `tag_keras_entry`.
tag_keras_entry.pin_kernels()
