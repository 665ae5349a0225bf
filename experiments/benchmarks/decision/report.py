"""The decision benchmark's tables: answers, rates per truth class,
quality, cost.

`answer_rows` turns each case (task set, measuring seed, budget) into one
row per decision-maker with the truth beside it: the truth's difference
over its seeds, its interval and its class (`truth_class`).
`class_rates` gives, per truth class, how often each answer was given,
with intervals from a bootstrap over clusters (task set, measuring seed:
the budgets of one measuring seed share their all-task networks), each
answer's precision, and the issue-36 demands. Pure pandas and NumPy:
tested on hand-made tables; `experiments.benchmarks.decision.score`
recomputes everything from `answers.csv` alone.
"""

import os

import numpy as np
import pandas as pd
from scipy import stats

SPLIT, KEEP, UNDECIDED = "split", "keep together", "undecided"

#: The decision-makers, each a function of a unit's budget entry.
DECIDERS = {
    "affinity structure (stable = split)": lambda entry: (
        SPLIT if entry["affinity_structure"] == "stable" else KEEP),
    "validated decision": lambda entry: entry["decision"],
    # The validated decision's point estimate without its bounds: the
    # better option on validation, however small the difference.
    "validation mean (no interval)": lambda entry: (
        SPLIT if entry["difference"] < 0 else KEEP),
    "always split": lambda entry: SPLIT,
    "always keep together": lambda entry: KEEP,
}

#: Truth classes, from the truth's 95% interval of the difference D (the
#: split minus the all-task network, summed test error %) and the margin.
SPLIT_BETTER = "split better"
WITHIN_MARGIN = "within margin"
ALL_TASK_BETTER = "all-task better"
INDETERMINATE = "indeterminate"
CLASSES = (SPLIT_BETTER, WITHIN_MARGIN, ALL_TASK_BETTER, INDETERMINATE)
#: The answers each determinate class makes right.
RIGHT_ANSWER = {SPLIT_BETTER: SPLIT, WITHIN_MARGIN: KEEP,
                ALL_TASK_BETTER: KEEP}


def truth_class(low, high, margin):
    """The class of a truth interval [low, high] of D: "split better"
    (the whole interval below -margin: the gain is at least the margin),
    "all-task better" (above 0), "within margin" (above -margin: any gain
    is below the margin), else "indeterminate"."""
    if high < -margin:
        return SPLIT_BETTER
    if low > 0:
        return ALL_TASK_BETTER
    if low > -margin:
        return WITHIN_MARGIN
    return INDETERMINATE


def truth_row(split_totals, all_totals, margin, level=0.95):
    """The truth of one grouping against the all-task network.

    `split_totals` and `all_totals` are per truth seed (paired); `margin`
    is in their units. The interval is Student's t over the seeds'
    paired differences at `level` (two-sided).
    """
    difference = np.asarray(split_totals) - np.asarray(all_totals)
    seeds = len(difference)
    mean = float(difference.mean())
    if seeds > 1:
        se = float(difference.std(ddof=1) / np.sqrt(seeds))
        half = float(stats.t.ppf(0.5 + level / 2, seeds - 1)) * se
    else:
        se = half = float("nan")
    low, high = mean - half, mean + half
    return {"truth_split": float(np.mean(split_totals)),
            "truth_all": float(np.mean(all_totals)),
            "truth_difference": mean, "truth_se": se, "truth_low": low,
            "truth_high": high, "truth_seeds": seeds,
            "truth_margin": float(margin),
            "truth_class": (truth_class(low, high, margin) if seeds > 1
                            else INDETERMINATE)}


def right(answer, klass):
    """Whether `answer` is right for a truth class: True/False, or None
    for "undecided" or an indeterminate truth."""
    if answer == UNDECIDED or klass not in RIGHT_ANSWER:
        return None
    return RIGHT_ANSWER[klass] == answer


def answer_rows(task_set, units, totals):
    """One row per (measuring seed, budget, decision-maker).

    `totals(groups, serve)` gives the served total test error (%) per
    truth seed; the all-task network's is `totals` of the one group. The
    truth margin is the validated decision's margin in the truth's units
    (summed error rate -> percentage points).
    """
    tasks = list(task_set)
    every = totals(((*tasks,),), {t: 0 for t in tasks})
    rows = []
    for unit in units:
        for budget, entry in unit["budgets"].items():
            groups = tuple(tuple(g) for g in entry["groups"])
            known = truth_row(totals(groups, entry["serve"]), every,
                              100 * entry["margin"])
            for name, decide in DECIDERS.items():
                answer = decide(entry)
                validated = name == "validated decision"
                rows.append({
                    "seed": unit["seed"], "budget": int(budget),
                    "decider": name, "answer": answer,
                    "answer_detail": (entry["answer_detail"] if validated
                                      else ""),
                    "seeds_used": entry["seeds"] if validated else 0,
                    "right": right(answer, known["truth_class"]),
                    "validation_difference": entry["difference"],
                    "validation_low": entry["low"],
                    "validation_high": entry["high"],
                    "margin": entry["margin"], **known})
    return rows


def ratio_interval(frame, numerator, denominator, reps=2000, seed=0,
                   level=0.95):
    """`(estimate, low, high)` of sum(numerator) / sum(denominator) over
    the rows of `frame` (two boolean masks), with a percentile interval
    from resampling clusters (task set, measuring seed) with replacement:
    the budgets of one measuring seed share their networks. NaN where
    the denominator is empty (the estimate) or empty in over half the
    resamples (the interval)."""
    keys = frame.task_set.astype(str) + "/" + frame.seed.astype(str)
    num = np.asarray(numerator, float)
    den = np.asarray(denominator, float)
    num = pd.Series(num, index=frame.index).groupby(keys, sort=False).sum()
    den = pd.Series(den, index=frame.index).groupby(keys, sort=False).sum()
    num, den = num.to_numpy(), den.to_numpy()
    nan = float("nan")
    if not den.sum():
        return nan, nan, nan
    estimate = float(num.sum() / den.sum())
    rng = np.random.default_rng(seed)
    chosen = rng.integers(0, len(num), (reps, len(num)))
    tops, bottoms = num[chosen].sum(axis=1), den[chosen].sum(axis=1)
    kept = bottoms > 0
    if kept.sum() < reps / 2:
        return estimate, nan, nan
    draws = tops[kept] / bottoms[kept]
    tail = (1 - level) / 2
    return (estimate, float(np.quantile(draws, tail)),
            float(np.quantile(draws, 1 - tail)))


def _determinate(frame):
    return frame.truth_class != INDETERMINATE


def _rights(frame):
    return frame.right.map(lambda v: v is True or v == "True"
                           or v == 1).astype(bool)


def rate(frame, answer, condition, reps=2000):
    """The share of the rows meeting `condition` answered `answer`."""
    return ratio_interval(frame, condition & (frame.answer == answer),
                          condition, reps)


def answer_precision(frame, answer, reps=2000):
    """Of the `answer`s on determinate truths, the share that were right."""
    given = (frame.answer == answer) & _determinate(frame)
    return ratio_interval(frame, given & _rights(frame), given, reps)


def class_rates(answers, decider="validated decision", reps=2000):
    """Per truth class: the cases, the share of each answer with its
    cluster-bootstrap 95% interval, and the mean seeds used. `answers` is
    `answers.csv` as a frame."""
    frame = answers[answers.decider == decider]
    rows = []
    for klass in CLASSES:
        condition = frame.truth_class == klass
        part = frame[condition]
        row = {"decider": decider, "truth_class": klass, "cases": len(part),
               "clusters": part.groupby(["task_set", "seed"]).ngroups,
               "seeds_used": (float(part.seeds_used.mean()) if len(part)
                              else float("nan"))}
        for answer in (SPLIT, KEEP, UNDECIDED):
            name = answer.replace(" ", "_")
            row[name], row[f"{name}_low"], row[f"{name}_high"] = rate(
                frame, answer, condition, reps)
        rows.append(row)
    return pd.DataFrame(rows)


def precision(answers, decider="validated decision", reps=2000):
    """Each answer's precision on the determinate cases, with its
    cluster-bootstrap 95% interval: of the "split" answers, the share
    whose truth is "split better"; of "keep together", the share whose
    truth is "within margin" or "all-task better"."""
    frame = answers[answers.decider == decider]
    rows = []
    for answer in (SPLIT, KEEP):
        given = (frame.answer == answer) & _determinate(frame)
        estimate, low, high = answer_precision(frame, answer, reps)
        rows.append({"decider": decider, "answer": answer,
                     "answers": int(given.sum()),
                     "right": int((given & _rights(frame)).sum()),
                     "precision": estimate, "low": low, "high": high})
    return pd.DataFrame(rows)


def _all_as_good(frame):
    """The all-task network at least as good: "all-task better", or
    "within margin" with the truth's mean difference at least 0."""
    return ((frame.truth_class == ALL_TASK_BETTER)
            | ((frame.truth_class == WITHIN_MARGIN)
               & (frame.truth_difference >= 0)))


def _two_margins(frame):
    return frame.truth_difference.abs() >= 2 * frame.truth_margin


#: The issue-36 demands: name -> (`(estimate, low, high, cases)` of a
#: decider's rows, bound, "max" or "min").
DEMANDS = {
    "P(split given the all-task network at least as good)": (
        lambda f, r: (*rate(f, SPLIT, _all_as_good(f), r),
                      int(_all_as_good(f).sum())), 0.05, "max"),
    "P(keep together given the split better by at least the margin)": (
        lambda f, r: (*rate(f, KEEP, f.truth_class == SPLIT_BETTER, r),
                      int((f.truth_class == SPLIT_BETTER).sum())),
        0.05, "max"),
    "precision of split": (
        lambda f, r: (*answer_precision(f, SPLIT, r), int((
            (f.answer == SPLIT) & _determinate(f)).sum())), 0.90, "min"),
    "precision of keep together": (
        lambda f, r: (*answer_precision(f, KEEP, r), int((
            (f.answer == KEEP) & _determinate(f)).sum())), 0.90, "min"),
    "P(undecided given a true difference of at least 2 margins)": (
        lambda f, r: (*rate(f, UNDECIDED, _two_margins(f), r),
                      int(_two_margins(f).sum())), 0.25, "max"),
}


def demands(answers, decider="validated decision", reps=2000):
    """Each demand's estimate, interval, bound, the cases it rests on,
    and whether the estimate meets it ("n/a" without cases)."""
    frame = answers[answers.decider == decider]
    rows = []
    for name, (measure, bound, kind) in DEMANDS.items():
        estimate, low, high, cases = measure(frame, reps)
        if not cases:
            outcome = "n/a"
        elif kind == "max":
            outcome = "met" if estimate <= bound else "not met"
        else:
            outcome = "met" if estimate >= bound else "not met"
        rows.append({"decider": decider, "demand": name,
                     "estimate": estimate, "low": low, "high": high,
                     "bound": bound, "kind": kind, "cases": cases,
                     "outcome": outcome})
    return pd.DataFrame(rows)


def classes_per_set(answers, decider="validated decision"):
    """Per task set: the cases of each truth class and each answer, the
    truth's median SE against its margin, and the mean seeds used."""
    frame = answers[answers.decider == decider]
    rows = []
    for name, part in frame.groupby("task_set", sort=False):
        row = {"task_set": name, "cases": len(part),
               "truth_seeds": int(part.truth_seeds.min()),
               "median_truth_se": float(part.truth_se.median()),
               "median_margin": float(part.truth_margin.median()),
               "seeds_used": float(part.seeds_used.mean())}
        for klass in CLASSES:
            row[klass] = int((part.truth_class == klass).sum())
        for answer in (SPLIT, KEEP, UNDECIDED):
            row[f"said {answer}"] = int((part.answer == answer).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def tables(answers, reps=2000):
    """The summary tables of `answers` (name -> frame): `classes` and
    `precision` for every decision-maker, `demands` for every one, and
    `sets` (per task set) for the validated decision."""
    deciders = list(dict.fromkeys(answers.decider))
    return {
        "classes": pd.concat([class_rates(answers, d, reps)
                              for d in deciders], ignore_index=True),
        "precision": pd.concat([precision(answers, d, reps)
                                for d in deciders], ignore_index=True),
        "demands": pd.concat([demands(answers, d, reps) for d in deciders],
                             ignore_index=True),
        "sets": classes_per_set(answers),
    }


def _interval(row, name):
    value, low, high = row[name], row[f"{name}_low"], row[f"{name}_high"]
    if np.isnan(value):
        return "–"
    if np.isnan(low):
        return f"{value:.0%}"
    return f"{value:.0%} [{low:.0%}, {high:.0%}]"


def rates_markdown(classes):
    """The class rates as Markdown, one row per decider and class."""
    lines = ["| decision-maker | truth class | cases (clusters) | split | "
             "keep together | undecided | mean seeds |",
             "|---|---|---|---|---|---|---|"]
    for row in classes.to_dict("records"):
        lines.append(
            f"| {row['decider']} | {row['truth_class']} | {row['cases']} "
            f"({row['clusters']}) | {_interval(row, 'split')} | "
            f"{_interval(row, 'keep_together')} | "
            f"{_interval(row, 'undecided')} | "
            + ("–" if np.isnan(row["seeds_used"]) or not row["seeds_used"]
               else f"{row['seeds_used']:.1f}") + " |")
    return "\n".join(lines)


def demands_markdown(demand_rows):
    lines = ["| decision-maker | demand | estimate [95% cluster interval] | "
             "bound | cases | outcome |", "|---|---|---|---|---|---|"]
    for row in demand_rows.to_dict("records"):
        bound = ("≤ " if row["kind"] == "max" else "≥ ") + f"{row['bound']:.0%}"
        estimate = ("–" if np.isnan(row["estimate"]) else
                    f"{row['estimate']:.1%}" + (
                        "" if np.isnan(row["low"]) else
                        f" [{row['low']:.1%}, {row['high']:.1%}]"))
        lines.append(f"| {row['decider']} | {row['demand']} | {estimate} | "
                     f"{bound} | {row['cases']} | {row['outcome']} |")
    return "\n".join(lines)


def report_text(answers, summary, quality, cost, costs, command, pending):
    """`report.md`: how the benchmark was made and every table."""
    validated = "validated decision"
    demand_rows = summary["demands"]
    return "\n".join([
        "# Does the decision hold? (issue 36)", "",
        f"Command: `{command}`", "",
        ("Task sets still missing: " + ", ".join(pending)
         if pending else "Every task set asked for is complete."), "",
        "Each case is one task set, measuring seed and budget: TAG's "
        "grouping, decided by each decision-maker, against a truth of "
        "every network trained under the truth seeds (summed test error "
        "%). The truth's class comes from its 95% t interval over those "
        "seeds and the decision's margin in the same units: \"split "
        "better\" (the interval below -margin), \"all-task better\" "
        "(above 0), \"within margin\" (above -margin), else "
        "\"indeterminate\" (excluded from every rate and counted). "
        "Intervals resample clusters (task set, measuring seed).", "",
        "## The demands (validated decision)", "",
        demands_markdown(demand_rows[demand_rows.decider == validated]), "",
        "## Answers per truth class", "",
        rates_markdown(summary["classes"]), "",
        "## Precision of each answer (determinate cases)", "",
        markdown(summary["precision"], [
            "decider", "answer", "answers", "right", "precision", "low",
            "high"]), "",
        "## Per task set (validated decision)", "",
        markdown(summary["sets"], list(summary["sets"].columns),
                 {"seeds_used": "{:.1f}"}), "",
        "## Every demand, every decision-maker", "",
        demands_markdown(demand_rows), "",
        "## Grouping quality (total test error %, truth)", "",
        markdown(quality, [
            "task_set", "budget", "tag", "tag_se", "random", "mtl", "stl",
            "tag_vs_random", "tag_vs_mtl", "measuring_seeds"]), "",
        "## Cost per measuring seed (seconds)", "",
        markdown(cost.groupby("task_set", sort=False).mean(
            numeric_only=True).reset_index(), [
            "task_set", "measure_seconds", "decision_seconds",
            "decision_networks"], {"decision_networks": "{:.1f}"}), "",
        "## The whole search, side by side", "",
        "Measured: TAG's run and its validated decision. Estimated from "
        "the decision's mean seconds per network: HOA, TAG's best of 3 "
        "and the exhaustive search, each under 3 seeds.", "",
        markdown(costs, ["task_set", "search", "trainings", "seconds",
                         "measured"],
                 {"trainings": "{:.0f}", "seconds": "{:.0f}"}), ""])


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


def plot_classes(rates, path):
    """Per decision-maker, per truth class: the share of each answer with
    its cluster-bootstrap interval, and the cases above each group."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    deciders = list(dict.fromkeys(rates.decider))
    figure, axes = plt.subplots(1, len(deciders), sharey=True,
                                figsize=(3.2 * len(deciders), 3.6))
    width = 0.27
    colours = {SPLIT: "tab:orange", KEEP: "tab:blue", UNDECIDED: "grey"}
    for axis, decider in zip(np.atleast_1d(axes), deciders):
        part = rates[rates.decider == decider].reset_index(drop=True)
        for j, answer in enumerate((SPLIT, KEEP, UNDECIDED)):
            name = answer.replace(" ", "_")
            values = part[name].to_numpy(float)
            errors = np.abs(np.vstack([values - part[f"{name}_low"],
                                       part[f"{name}_high"] - values]))
            axis.bar(np.arange(len(part)) + (j - 1) * width, values, width,
                     yerr=np.nan_to_num(errors), capsize=2,
                     color=colours[answer], label=answer)
        for i, cases in enumerate(part.cases):
            axis.text(i, 1.08, f"n={cases}", ha="center", fontsize=6)
        axis.axhline(0.05, color="black", linestyle=":", linewidth=1)
        axis.set_title(decider, fontsize=8)
        axis.set_xticks(range(len(part)), part.truth_class, rotation=45,
                        fontsize=7, ha="right")
        axis.set_ylim(0, 1.15)
    np.atleast_1d(axes)[0].set_ylabel("share of the class's cases")
    np.atleast_1d(axes)[0].legend(fontsize=7, loc="upper left")
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
    answers = os.path.join(out_dir, "answers.csv")
    if os.path.exists(answers) and "truth_class" not in pd.read_csv(
            answers, nrows=1).columns:
        return [[], [], []]  # written under the two-answer protocol
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
