"""The decision benchmark's tables: answers, calibration, quality, cost.

`answer_rows` turns each (measuring seed, budget) into one row per
decision-maker with the truth beside it; `calibration` counts how often
each decision-maker was right in each direction; `quality` compares TAG's
groupings with random groupings, the all-task network and one network
per task on the truth. Pure pandas and NumPy: tested on hand-made tables.
"""

import os

import numpy as np
import pandas as pd

#: The decision-makers, each a function of a unit's budget entry.
DECIDERS = {
    "affinity structure (stable = split)": lambda entry: (
        "split" if entry["affinity_structure"] == "stable"
        else "keep together"),
    "validated decision": lambda entry: entry["decision"],
    # The same networks and interval, deciding on the error the truth is
    # measured in (`decide(metric="error")`).
    "validated decision (error)": lambda entry: (
        "split" if entry["error_high"] < 0 else "keep together"),
    # The validated decision's point estimate without its interval: the
    # better option on validation, however small the difference.
    "validation mean (no interval)": lambda entry: (
        "split" if entry["difference"] < 0 else "keep together"),
    "always split": lambda entry: "split",
    "always keep together": lambda entry: "keep together",
}


def truth_row(split_totals, all_totals):
    """The truth of one grouping against the all-task network.

    `split_totals` and `all_totals` are per truth seed (paired). The split
    beat the all-task network when the mean paired difference is below
    zero; the all-task network was at least as good when the difference
    is at least minus its standard error.
    """
    difference = np.asarray(split_totals) - np.asarray(all_totals)
    mean = float(difference.mean())
    se = (float(difference.std(ddof=1) / np.sqrt(len(difference)))
          if len(difference) > 1 else float("nan"))
    return {"truth_split": float(np.mean(split_totals)),
            "truth_all": float(np.mean(all_totals)),
            "truth_difference": mean, "truth_se": se,
            "split_better": mean < 0,
            "all_as_good": mean >= -(0.0 if np.isnan(se) else se)}


def answer_rows(task_set, units, totals):
    """One row per (measuring seed, budget, decision-maker).

    `totals(groups, serve)` gives the served total test error (%) per
    truth seed; the all-task network's is `totals` of the one group.
    """
    tasks = list(task_set)
    every = totals(((*tasks,),), {t: 0 for t in tasks})
    rows = []
    for unit in units:
        for budget, entry in unit["budgets"].items():
            groups = tuple(tuple(g) for g in entry["groups"])
            known = truth_row(totals(groups, entry["serve"]), every)
            for name, decide in DECIDERS.items():
                answer = decide(entry)
                right = (known["split_better"] if answer == "split"
                         else known["all_as_good"])
                rows.append({"seed": unit["seed"], "budget": int(budget),
                             "decider": name, "answer": answer,
                             "right": bool(right),
                             "validation_difference": entry["difference"],
                             **known})
    return rows


def derived_rows(rows):
    """`rows` plus the rows of deciders that only read a validated
    decision's row (its difference and its truth), where missing: tables
    written before such a decider existed gain it without a rerun."""
    frame = pd.DataFrame(rows)
    out = list(rows)
    base = frame[frame.decider == "validated decision"]
    name = "validation mean (no interval)"
    have = set(map(tuple, frame[frame.decider == name][
        ["task_set", "seed", "budget"]].to_numpy().tolist()))
    for row in base.to_dict("records"):
        if (row["task_set"], row["seed"], row["budget"]) in have:
            continue
        answer = DECIDERS[name]({"difference": row["validation_difference"]})
        right = (row["split_better"] if answer == "split"
                 else row["all_as_good"])
        out.append({**row, "decider": name, "answer": answer,
                    "right": bool(right)})
    return out


def calibration(rows):
    """Per task set and decision-maker (and pooled): of its "split"
    answers how many were right (the split beat the all-task network on
    the truth), of its "keep together" answers how many were right (the
    all-task network at least as good within the truth's SE)."""
    frame = pd.DataFrame(rows)
    out = []
    for (task_set, decider), part in list(frame.groupby(
            ["task_set", "decider"], sort=False)) + [
            (("all", d), p) for d, p in frame.groupby("decider", sort=False)]:
        split = part[part.answer == "split"]
        keep = part[part.answer != "split"]
        out.append({
            "task_set": task_set, "decider": decider,
            "split_answers": len(split),
            "split_right": int(split.right.sum()),
            "split_share": (split.right.mean() if len(split)
                            else float("nan")),
            "keep_answers": len(keep), "keep_right": int(keep.right.sum()),
            "keep_share": (keep.right.mean() if len(keep)
                           else float("nan")),
            "split_truly_better": int(part.split_better.sum()),
            "cases": len(part)})
    out = pd.DataFrame(out)
    sets = list(dict.fromkeys(frame.task_set)) + ["all"]
    order = {d: i for i, d in enumerate(DECIDERS)}
    return out.sort_values(
        ["task_set", "decider"], key=lambda c: c.map(
            {s: i for i, s in enumerate(sets)} if c.name == "task_set"
            else order), kind="stable").reset_index(drop=True)


def quality(task_set_name, units, totals, random, tasks):
    """Per budget: TAG's truth total error (mean over measuring seeds),
    random groupings' expectation, MTL and STL, with TAG's paired
    differences against random and MTL (mean ± SE over measuring seeds,
    each seed's grouping on the truth's mean over truth seeds)."""
    every = totals(((*tasks,),), {t: 0 for t in tasks}).mean()
    alone = totals(tuple((t,) for t in tasks),
                   {t: i for i, t in enumerate(tasks)}).mean()
    rows = []
    budgets = sorted({int(b) for u in units for b in u["budgets"]})
    for budget in budgets:
        tag = np.array([totals(tuple(tuple(g) for g in u["budgets"][str(
            budget)]["groups"]), u["budgets"][str(budget)]["serve"]).mean()
            for u in units])
        partitions, exact = random[budget]
        rg = np.mean([totals(p, {t: i for i, g in enumerate(p)
                                 for t in g}).mean() for p in partitions])
        se = (tag.std(ddof=1) / np.sqrt(len(tag)) if len(tag) > 1
              else float("nan"))
        rows.append({
            "task_set": task_set_name, "budget": budget,
            "tag": tag.mean(), "tag_se": se, "random": rg,
            "random_exact": exact, "random_partitions": len(partitions),
            "mtl": every, "stl": alone,
            "tag_vs_random": tag.mean() - rg, "tag_vs_mtl": tag.mean() - every,
            "measuring_seeds": len(tag)})
    return rows


def markdown(frame, columns, formats=None):
    """A frame as a Markdown table of `columns` (format per column)."""
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for row in frame.to_dict("records"):
        cells = []
        for column in columns:
            value = row[column]
            if isinstance(value, float):
                cells.append("n/a" if np.isnan(value)
                             else formats.get(column, "{:.2f}").format(value))
            else:
                cells.append(str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_calibration(calibration, path):
    """Per decision-maker and task set, the share of right "split" and
    "keep together" answers, each bar labelled with right/answers."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    deciders = list(dict.fromkeys(calibration.decider))
    sets = list(dict.fromkeys(calibration.task_set))
    figure, axes = plt.subplots(1, len(deciders), sharey=True,
                                figsize=(3.2 * len(deciders), 3.6))
    width = 0.4
    for axis, decider in zip(np.atleast_1d(axes), deciders):
        part = calibration[calibration.decider == decider].set_index(
            "task_set")
        for offset, kind, colour in ((-width / 2, "split", "tab:orange"),
                                     (width / 2, "keep", "tab:blue")):
            for i, name in enumerate(sets):
                if name not in part.index:  # not measured for this one
                    continue
                row = part.loc[name]
                answers, right = row[f"{kind}_answers"], row[f"{kind}_right"]
                if not answers:
                    continue
                axis.bar(i + offset, right / answers, width, color=colour,
                         label=kind if i == 0 else None)
                axis.text(i + offset, right / answers + 0.02,
                          f"{right}/{answers}", ha="center", fontsize=6,
                          rotation=90)
        axis.axhline(0.8, color="grey", linestyle=":", linewidth=1)
        axis.set_title(decider, fontsize=8)
        axis.set_xticks(range(len(sets)), sets, rotation=60, fontsize=7)
        axis.set_ylim(0, 1.25)
    np.atleast_1d(axes)[0].set_ylabel("share of answers right")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_quality(quality, path):
    """Per task set, total test error per budget: TAG (mean ± SE over
    measuring seeds), random groupings, MTL and STL."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    sets = list(dict.fromkeys(quality.task_set))
    figure, axes = plt.subplots(1, len(sets), figsize=(2.6 * len(sets), 3.2))
    for axis, name in zip(np.atleast_1d(axes), sets):
        part = quality[quality.task_set == name]
        axis.errorbar(part.budget, part.tag, yerr=part.tag_se, marker="o",
                      capsize=3, label="TAG")
        axis.plot(part.budget, part.random, marker="s", label="random")
        axis.axhline(part.mtl.iloc[0], color="black", linestyle="--",
                     label="MTL")
        axis.axhline(part.stl.iloc[0], color="grey", linestyle=":",
                     label="STL")
        axis.set_title(name, fontsize=9)
        axis.set_xlabel("networks")
        axis.set_xticks(sorted(part.budget))
    np.atleast_1d(axes)[0].set_ylabel("total test error (%)")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def earlier_rows(out_dir, rerun):
    """The committed rows of task sets this run does not redo.

    The cache is not committed, so a later session reruns only the task
    sets still missing; the tables keep every other set's rows.
    """
    kept = []
    for name in ("answers", "quality", "cost"):
        path = os.path.join(out_dir, f"{name}.csv")
        if not os.path.exists(path):
            kept.append([])
            continue
        frame = pd.read_csv(path)
        kept.append(frame[~frame.task_set.isin(rerun)].to_dict("records"))
    return kept


def cost_table(cost, task_sizes, budgets=(2, 3, 4), seeds=3, top=3):
    """The whole search per task set, in network trainings and seconds.

    Measured (means over measuring seeds): TAG's one measuring run and its
    validated decision (every network it trained). Estimated from the
    decision's mean seconds per network (same protocol and seeds): HOA
    (every single task and pair, under `seeds` seeds), the validated best
    of `top` TAG candidates (at most `top` x budget groups per budget,
    under `seeds` seeds) and the exhaustive search (every group, under
    `seeds` seeds). `task_sizes` maps a task set to its number of tasks.
    """
    rows = []
    for name, part in pd.DataFrame(cost).groupby("task_set", sort=False):
        n = task_sizes[name]
        per_network = (part.decision_seconds / part.decision_networks).mean()
        measure = part.measure_seconds.mean()
        decision = part.decision_networks.mean()
        estimates = {
            "HOA": (n + n * (n - 1) // 2) * seeds,
            f"TAG best of {top} (validation)": 1 + sum(
                top * b for b in budgets) * seeds,
            "every group (exhaustive)": (2 ** n - 1) * seeds,
        }
        rows.append({"task_set": name, "search": "TAG measuring run",
                     "trainings": 1.0, "seconds": measure,
                     "measured": True})
        rows.append({"task_set": name,
                     "search": "TAG + validated decision",
                     "trainings": 1 + decision,
                     "seconds": measure + part.decision_seconds.mean(),
                     "measured": True})
        for search, trainings in estimates.items():
            rows.append({"task_set": name, "search": search,
                         "trainings": float(trainings),
                         "seconds": trainings * per_network,
                         "measured": False})
    return pd.DataFrame(rows)
