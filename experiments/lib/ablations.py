"""Ablations of TAG from the paper (Fifty et al., 2021, section 5).

* `measurement`: how much the affinity matrix depends on how it is
  measured. Per seed, one all-task run measures every step on the
  training batches and a second (same seed, so the same training path:
  measuring never changes training) every step on validation batches.
  Measuring every n steps is the every-step record subsampled to the
  steps divisible by n. Reported: Pearson r over the off-diagonal entries
  of each matrix against the every-step, training-batch matrix.
* `wider`: the all-task network at 1x, 2x, 3x and 4x the encoder width
  (the paper's baselines without a latency constraint): total test error.
* `settings`: per seed, affinity measured under the base setting, at half
  the batch size and at twice the learning rate; each setting's TAG groups
  (budgets 2, 3, 4) trained under the base setting (the paper's Table 3):
  served total test error.
* `pcgrad`: per seed, TAG's groups (measured every
  `config.affinity_every_n_steps` steps, chosen for budgets 2, 3, 4), each
  trained plainly and with PCGrad: the served total test error (the
  paper's complementarity result), and the all-task network's (trained
  as the groups are).

Each writes `<name>.csv` (resumable) and returns a summary table.
"""

import dataclasses
import os

import numpy as np
import pandas as pd

from experiments.lib import tables
from experiments.lib import training

FREQUENCIES = (1, 5, 10, 25, 50)


def _every_step_run(data, config, out_dir, held_out):
    """Trains the all-task network measuring every step; returns the
    per-step table (`affinity_steps.csv`)."""
    import tag_keras

    log_dir = os.path.join(out_dir, "validation" if held_out else "train")
    steps_path = os.path.join(log_dir, "affinity_steps.csv")
    if not os.path.exists(os.path.join(log_dir, "affinity.csv")):
        kwargs = {}
        if held_out:
            kwargs["affinity_data"] = data.batches("validation",
                                                   config.batch_size)
        training.train_network(
            data, config, model_cls=tag_keras.TaskAffinityModel,
            affinity_every_n_steps=1,
            callbacks=[tag_keras.AffinityLogger(log_dir, tensorboard=False,
                                                figure=False)],
            **kwargs)
    return pd.read_csv(steps_path)


def _matrix(steps, every=1):
    """Mean matrix over the steps divisible by `every`."""
    chosen = steps[steps["step"] % every == 0]
    return chosen.pivot_table(index="source", columns="target",
                              values="affinity", aggfunc="mean")


def _off_diagonal(matrix, tasks):
    matrix = matrix.reindex(index=tasks, columns=tasks).to_numpy()
    return matrix[~np.eye(len(tasks), dtype=bool)]


def measurement(data, config, out_dir, *, seeds=3,
                frequencies=FREQUENCIES, log=print):
    """The measurement ablation (see the module); returns its summary."""
    from scipy import stats

    path = os.path.join(out_dir, "measurement.csv")
    rows = tables.resume(path, ["seed", "comparison", "pearson_r"])
    done = set(rows["seed"].astype(int)) if len(rows) else set()
    tasks = list(data.tasks)
    for seed in range(seeds):
        if seed in done:
            continue
        seeded = dataclasses.replace(config, seed=seed)
        base = os.path.join(out_dir, "runs", f"seed{seed}")
        log(f"seed {seed}: measuring every step (training batches) ...")
        train_steps = _every_step_run(data, seeded, base, held_out=False)
        log(f"seed {seed}: measuring every step (validation batches) ...")
        val_steps = _every_step_run(data, seeded, base, held_out=True)
        reference = _off_diagonal(_matrix(train_steps), tasks)
        new = []
        for every in frequencies[1:]:
            other = _off_diagonal(_matrix(train_steps, every), tasks)
            new.append({"seed": seed,
                        "comparison": f"every {every} steps vs every step",
                        "pearson_r": stats.pearsonr(reference, other)[0]})
        other = _off_diagonal(_matrix(val_steps), tasks)
        new.append({"seed": seed,
                    "comparison": "validation vs training batches",
                    "pearson_r": stats.pearsonr(reference, other)[0]})
        rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True)
        rows.to_csv(path, index=False)
    summary = []
    for comparison, group in rows.groupby("comparison", sort=False):
        mean, se = tables.mean_se(group["pearson_r"])
        summary.append({"comparison": comparison, "pearson r": mean,
                        "pearson r se": se, "seeds": len(group)})
    return pd.DataFrame(summary)


def wider(data, config, out_dir, *, factors=(1, 2, 3, 4), seeds=3,
          log=print):
    """The wider all-task networks (see the module); returns the summary."""
    path = os.path.join(out_dir, "wider.csv")
    rows = tables.resume(path, ["factor", "seed", "total_error"])
    done = set(zip(rows["factor"].astype(int), rows["seed"].astype(int)))
    width = config.width
    for seed in range(seeds):
        for factor in factors:
            if (factor, seed) in done:
                continue
            result, _ = training.train_network(
                data, dataclasses.replace(config, seed=seed,
                                          width=width * factor))
            total = 100 * float(sum(result.test_error.values()))
            log(f"width {width * factor} seed {seed}: total test error "
                f"{total:.2f}")
            rows = pd.concat([rows, pd.DataFrame([{
                "factor": factor, "width": width * factor, "seed": seed,
                "total_error": total}])], ignore_index=True)
            rows.to_csv(path, index=False)
    summary = []
    base = rows[rows["factor"] == 1].set_index("seed")["total_error"]
    for factor, group in rows.groupby("factor"):
        values = group.set_index("seed")["total_error"]
        mean, se = tables.mean_se(values)
        diff, diff_se = tables.mean_se(values - base.reindex(values.index))
        summary.append({"width": f"{int(factor)}x ({int(width * factor)})",
                        "total test error (%)": mean,
                        "total test error (%) se": se,
                        "minus 1x": diff, "minus 1x se": diff_se,
                        "seeds": len(group)})
    return pd.DataFrame(summary)


def _seeds_to_run(path, columns, seeds, config):
    """`(rows already in path, [(seed, config with that seed)] to run)`:
    a seed with any row in `path` is done (its rows are written at once)."""
    rows = tables.resume(path, columns)
    done = set(rows["seed"].astype(int)) if len(rows) else set()
    return rows, [(seed, dataclasses.replace(config, seed=seed))
                  for seed in range(seeds) if seed not in done]


def _served(engine, grouping):
    """Trains `grouping`'s groups; its served total test error (%) and its
    groups as text."""
    errors = training.served_errors(engine, grouping.groups, grouping.serve)
    return {"total_error": 100 * sum(errors.values()),
            "groups": " ".join("|".join(g) for g in grouping.groups)}


def pcgrad(data, config, out_dir, *, seeds=3, budgets=(2, 3, 4), log=print):
    """TAG's groups trained with and without PCGrad; returns the summary."""
    import tag_keras
    from experiments.lib import measure as measure_lib
    from tag_keras import mtl

    path = os.path.join(out_dir, "pcgrad.csv")
    rows = tables.resume(path, ["seed", "budget", "method"])
    done = set(zip(rows["seed"].astype(int), rows["budget"].astype(int),
                   rows["method"]))
    for seed in range(seeds):
        wanted = [(seed, b, m) for b in budgets for m in ("TAG", "TAG+PCGrad")]
        if all(key in done for key in wanted):
            continue
        seeded = dataclasses.replace(config, seed=seed)
        log(f"seed {seed}: measuring affinity ...")
        _, affinity = measure_lib.measure(
            data, seeded, os.path.join(out_dir, "runs", f"seed{seed}"),
            tensorboard=False, write_steps=False)
        engines = {
            "TAG": training.seeded_trainer(data, seeded, log=log),
            "TAG+PCGrad": training.seeded_trainer(
                data, seeded, log=log, training_method=mtl.PCGrad)}
        # The all-task network trained as the groups are (not the
        # measuring run, which early-stops on the validation split).
        all_task = 100 * sum(training.served_errors(
            engines["TAG"], [tuple(data.tasks)],
            dict.fromkeys(data.tasks, 0)).values())
        new = []
        for budget in budgets:
            grouping = tag_keras.select_groups(affinity, budget)
            for method, engine in engines.items():
                new.append({"seed": seed, "budget": budget,
                            "method": method, "all_task_error": all_task,
                            **_served(engine, grouping)})
        rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True)
        rows.to_csv(path, index=False)
    summary = []
    for budget, group in rows.groupby("budget"):
        row = _paired(group, budget, "TAG", "TAG+PCGrad",
                      "PCGrad minus plain")
        all_task = group.groupby("seed")["all_task_error"].first()
        row["all-task"], row["all-task se"] = tables.mean_se(all_task)
        summary.append(row)
    return pd.DataFrame(summary)


def _paired(group, budget, first, second, difference):
    """One budget's summary row: each method's total error and the paired
    difference `second − first` over seeds (mean ± SE)."""
    wide = group.pivot_table(index="seed", columns="method",
                             values="total_error")
    row = {"budget": int(budget), "seeds": len(wide)}
    for name in (first, second):
        row[name], row[f"{name} se"] = tables.mean_se(wide[name])
    row[difference], row[f"{difference} se"] = tables.mean_se(
        wide[second] - wide[first])
    return row


#: The measuring settings of the `settings` ablation: name -> changes.
SETTINGS = {
    "base": {},
    "half batch": {"batch_size": 0.5},
    "double learning rate": {"learning_rate": 2.0},
}


def settings(data, config, out_dir, *, seeds=3, budgets=(2, 3, 4),
             log=print):
    """Groups found under other measuring settings; returns the summary."""
    import tag_keras
    from experiments.lib import measure as measure_lib

    path = os.path.join(out_dir, "settings.csv")
    rows, todo = _seeds_to_run(path, ["seed", "budget", "setting"], seeds,
                               config)
    for seed, seeded in todo:
        engine = training.seeded_trainer(data, seeded, log=log)
        new = []
        for name, changes in SETTINGS.items():
            measured = dataclasses.replace(seeded, **{
                key: type(getattr(seeded, key))(getattr(seeded, key) * factor)
                for key, factor in changes.items()})
            log(f"seed {seed}: measuring affinity ({name}) ...")
            folder = name.replace(" ", "_")
            _, affinity = measure_lib.measure(
                data, measured, os.path.join(out_dir, "runs", f"seed{seed}",
                                             folder),
                tensorboard=False, write_steps=False)
            for budget in budgets:
                grouping = tag_keras.select_groups(affinity, budget)
                new.append({"seed": seed, "budget": budget, "setting": name,
                            **_served(engine, grouping)})
        rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True)
        rows.to_csv(path, index=False)
    summary = []
    for budget, group in rows.groupby("budget"):
        wide = group.pivot_table(index="seed", columns="setting",
                                 values="total_error")
        for name in SETTINGS:
            row = {"budget": int(budget), "setting": name,
                   "seeds": len(wide)}
            row["total error"], row["total error se"] = tables.mean_se(
                wide[name])
            if name != "base":
                row["minus base"], row["minus base se"] = tables.mean_se(
                    wide[name] - wide["base"])
            same = group.pivot_table(index="seed", columns="setting",
                                     values="groups", aggfunc="first")
            row["same groups as base"] = int(
                (same[name] == same["base"]).sum())
            summary.append(row)
    return pd.DataFrame(summary)


def hoa_half(data, config, out_dir, *, seeds=3, budgets=(2, 3, 4),
             log=print):
    """HOA under Standley et al.'s budget: single-task networks of half the
    width count half a network. Returns the summary.

    Per seed: every single task and pair at full width (HOA's networks),
    every single task at half width; HOA chooses per budget with every
    network counting one, and again with the half-width singles available
    at half the cost. The chosen groups are trained and their served test
    errors summed (a half-size single serves with its own test error).
    """
    import tag_keras
    from experiments.lib import hoa as hoa_lib

    path = os.path.join(out_dir, "hoa_half.csv")
    rows, todo = _seeds_to_run(path, ["seed", "budget", "method"], seeds,
                               config)
    for seed, seeded in todo:
        full = training.seeded_trainer(data, seeded, log=log)
        half = training.seeded_trainer(data, dataclasses.replace(
            seeded, width=max(1, config.width // 2)), log=log)
        log(f"seed {seed}: HOA's single-task and pair networks ...")
        performance, _ = hoa_lib.measure_performance(full)
        singles = [(t,) for t in data.tasks]
        half_losses = pd.DataFrame({
            "task": list(data.tasks),
            "value": [network.mean("validation", network.tasks[0])
                      for network in half.train(singles)]})
        new = []
        for budget in budgets:
            for method, options in (
                    ("HOA", {}),
                    ("HOA, half-size singles",
                     {"half_size_singles": half_losses})):
                grouping = tag_keras.select_groups_from_performance(
                    performance, budget, **options)
                halved = set(grouping.half_size)
                whole = [g for g in grouping.groups if g not in halved]
                full.train(whole)
                errors = {}
                for task, index in grouping.serve.items():
                    group = grouping.groups[index]
                    engine = half if group in halved else full
                    errors[task] = engine.network(group, seed).mean(
                        "test", task, "error")
                new.append({
                    "seed": seed, "budget": budget, "method": method,
                    "total_error": 100 * sum(errors.values()),
                    "networks": len(grouping.groups),
                    "half_size": len(halved),
                    "groups": " ".join(
                        "|".join(g) + ("(half)" if g in halved else "")
                        for g in grouping.groups)})
        rows = pd.concat([rows, pd.DataFrame(new)], ignore_index=True)
        rows.to_csv(path, index=False)
    summary = []
    half_name = "HOA, half-size singles"
    for budget, group in rows.groupby("budget"):
        row = _paired(group, budget, "HOA", half_name, "half minus full")
        used = group[group.method == half_name]
        row["half-size networks chosen (mean)"] = float(
            used["half_size"].mean())
        summary.append(row)
    return pd.DataFrame(summary)
