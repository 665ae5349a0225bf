"""Benchmark binaries (`python -m experiments.benchmarks.NAME`).

* `affinity_benchmark`: what measuring costs, side by side with a plain step.
* `select_benchmark`: the selector's time and proven gap by task count.
* `grouping_quality/` (entry point + `work`, `report`, `markdown`,
  `plots`, `write`): groupings against exhaustive search.
* `calibration/` (entry point + `report`, `write`): the affinity
  structure and every estimator on a de-noised every-group truth.
* `decision/` (entry point + `lib`, `report`, `proposers`,
  `pipeline_runs`): does the validated decision hold?
* `it_mtl_margins`: why IT-MTL follows MTL on MultiDigits.

Results are committed under `results/`, each with the command that made it.
May import `experiments.lib`, `experiments.data` and `tag_keras`.
"""
