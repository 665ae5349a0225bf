"""Benchmark binaries (`python -m experiments.benchmarks.NAME`).

* `affinity_benchmark`: what measuring costs, side by side with a plain step.
* `select_benchmark`: the selector's time and proven gap by task count.
* `grouping_quality` (with `_report`: evaluation, `_markdown`: text,
  `_plots`: figures, `_write`: the files): groupings against exhaustive
  search.
* `it_mtl_margins`: why IT-MTL follows MTL on MultiDigits.

Results are committed under `results/`, each with the command that made it.
May import `experiments.lib`, `experiments.data` and `tag_keras`.
"""
