#!/usr/bin/env bash
# A/B of the JAX measured step: a baseline commit (worktree /tmp/ab_before;
# 6ad9b4f, then 8db3e31) against the working tree, alternating, one
# process each (experiments.benchmarks.backends' child), 9 and 40 tasks.
. /work/main/.venv/bin/activate
for tasks in ${TASKS:-9 40}; do
  for round in 1 2 3; do
    for tree in ${BEFORE:-/tmp/ab_before} ${AFTER:-/work/main}; do
      cd $tree
      line=$(KERAS_BACKEND=jax python -m experiments.benchmarks.backends \
        --backends_child_tasks=$tasks --backends_repeats=20 2>/dev/null | tail -1)
      echo "$tree $line"
    done
  done
done
