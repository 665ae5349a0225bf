"""Flag-free library of the experiments: what the binaries run.

* `training`: the training protocol (`TrainConfig`; `seeded_trainer`,
  the library's `tag_keras.train.GroupTrainer` that trains every group
  network; `train_network` for one network whose model is needed),
  `distribution`: tf.distribute and chief-only output,
  `models`: the networks, `timing`: wall-time and per-epoch progress
  callbacks.
* `measure`: one all-task run measuring affinity (run_affinity).
* `hoa`: every single task and pair, then HOA selection.
* `groups`: training the groups of a groups document (train_groups).
* `pipeline`: the whole experiment and its baselines.
* `it_mtl`, `demo`: those binaries' logic.
* `results`: the comparison tables.
* `step_cost`: the models, batches and timers of the step-cost
  benchmarks (`affinity_benchmark`, `backends`).

Library code: never reads flags; the binaries (`experiments/*.py`) parse
them and call these functions, and never import one another. May import
`experiments.data`, `tag_keras` and TensorFlow/Keras; never a binary or
`absl.flags`.
"""
