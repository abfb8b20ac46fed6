"""The report's PNGs: accuracies and paired differences with their 95% intervals, speed, sweep.

Every plot is drawn from `report.collect`'s statistics (and the sweep records), so the
plots and the tables always show the same numbers.
"""

import math
import os

import numpy as np

from benchmarking import stats
from benchmarking.methods import METHODS
from benchmarking.report import (collect, collect_robustness, plot_name,
                                  robustness_plot_name)

__all__ = ["plot_all"]

_VERDICT_COLOURS = {stats.WINS: "C2", stats.LOSES: "C3", stats.NO_DIFFERENCE: "C7"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def _error(mean, low, high):
    """Matplotlib's asymmetric error bars; none where the interval is undefined."""
    if math.isnan(low):
        return [[0.0], [0.0]]
    return [[mean - low], [high - mean]]


def _protocol_plot(plt, result, path):
    rows = [row for row in result.rows if row.method != "ceiling"]
    ceiling = result.row("ceiling")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for position, row in enumerate(rows):
        values = list(row.accuracy.values())
        mean, low, high = stats.mean_interval(values)
        # Points, not bars: the axis does not start at 0.
        left.errorbar(position, mean, yerr=_error(mean, low, high), fmt="s", markersize=8,
                      color=f"C{position}", capsize=6)
        left.plot([position] * len(values), values, "k.", markersize=4)
    values = [v for row in result.rows for v in row.accuracy.values()]
    if ceiling is not None:
        left.axhline(ceiling.mean, color="gray", linestyle="--", label="all labels (ceiling)")
        left.legend(loc="best", fontsize="small")
    left.set_ylim(max(0.0, min(values) - 0.03), min(1.0, max(values) + 0.02))
    left.set_xticks(range(len(rows)), [row.label for row in rows], rotation=15)
    left.set_ylabel("test accuracy")
    left.set_title("mean, 95% interval of the mean, seeds")

    compared = [row for row in rows if row.paired is not None]
    for position, row in enumerate(compared):
        paired = row.paired
        right.errorbar(position, paired.mean, yerr=_error(paired.mean, paired.low, paired.high),
                       fmt="o", color=_VERDICT_COLOURS[paired.verdict], capsize=6)
        right.plot([position] * len(paired.differences), paired.differences, "k.",
                   markersize=4)
    right.axhline(0.0, color="gray", linestyle="--")
    right.set_xticks(range(len(compared)), [row.label for row in compared], rotation=15)
    right.set_ylabel("accuracy − supervised (same seed)")
    right.set_title("paired difference, 95% interval (green: wins)")
    fig.suptitle(f"{result.name}: {result.protocol.title}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _differences_plot(plt, results, path):
    methods = []
    for result in results:
        methods += [row.method for row in result.rows
                    if row.paired is not None and row.method not in methods]
    fig, ax = plt.subplots(figsize=(max(6, 2 + 1.5 * len(results)), 4))
    width = 0.8 / max(1, len(methods))
    for index, method in enumerate(methods):
        for position, result in enumerate(results):
            row = result.row(method)
            if row is None or row.paired is None:
                continue
            x = position - 0.4 + width * (index + 0.5)
            paired = row.paired
            ax.errorbar(x, paired.mean, yerr=_error(paired.mean, paired.low, paired.high),
                        fmt="o", color=f"C{index + 1}", capsize=4,
                        label=row.label if position == 0 else None)
    ax.axhline(0.0, color="gray", linestyle="--")
    ax.set_xticks(range(len(results)), [result.name for result in results])
    ax.set_ylabel("accuracy − supervised, mean and 95% CI")
    ax.set_title("Paired difference to supervised-only per protocol")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _speed_plot(plt, speed, path):
    fig, ax = plt.subplots(figsize=(6, 4))
    labels, ratios = [], []
    for backbone, per_method in speed.items():
        for method, ratio in per_method.items():
            if method != "records":
                labels.append(f"{method}\n({backbone})" if len(speed) > 1 else method)
                ratios.append(ratio)
    ax.bar(range(len(ratios)), ratios, color=[f"C{i}" for i in range(len(ratios))])
    ax.axhline(1.0, color="gray", linestyle="--")
    ax.set_xticks(range(len(ratios)), labels, rotation=15)
    ax.set_ylabel("step time / supervised step time")
    ax.set_title("Median step time relative to supervised Keras training")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _sweep_plot(plt, sweep, path):
    panels = sorted({(r["method"], r["param"]) for r in sweep})
    columns = min(3, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.5 * columns, 3.5 * rows), squeeze=False)
    for ax, (method, param) in zip(axes.flat, panels):
        records = [r for r in sweep if r["method"] == method and r["param"] == param]
        values = sorted({str(r["value"]) for r in records},
                        key=lambda v: (0, float(v), "") if _is_number(v) else (1, 0, v))
        numeric = all(_is_number(v) for v in values)
        positions = {v: (float(v) if numeric else i) for i, v in enumerate(values)}
        for index, protocol in enumerate(sorted({r["protocol"] for r in records})):
            xs, means, errors = [], [], []
            for value in values:
                scores = [r["val_accuracy"] for r in records
                          if r["protocol"] == protocol and str(r["value"]) == value]
                if scores:
                    mean, low, high = stats.mean_interval(scores)
                    xs.append(positions[value])
                    means.append(mean)
                    errors.append(_error(mean, low, high))
            ax.errorbar(xs, means, yerr=np.array(errors).reshape(len(xs), 2).T, marker="o",
                        capsize=4, color=f"C{index}", label=protocol)
        if numeric:
            numbers = [float(v) for v in values]
            if min(numbers) > 0 and max(numbers) / min(numbers) > 20:
                ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(values)), values)
        ax.set_title(f"{method}: {param}")
        ax.set_ylabel("validation accuracy")
        ax.legend(fontsize="small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.suptitle("Validation accuracy per swept value: mean and 95% interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _robustness_plot(plt, result, path):
    """Accuracy against the attack's epsilon, one line per method, 95% intervals over seeds."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for index, method in enumerate(result.methods):
        means, errors = [], []
        for position in range(len(result.epsilons)):
            mean, low, high = stats.mean_interval(list(result.at(method, position).values()))
            means.append(mean)
            errors.append(_error(mean, low, high))
        ax.errorbar(result.epsilons, means, yerr=np.array(errors).reshape(-1, 2).T, marker="o",
                    capsize=4, color=f"C{index}", label=_method_label(method))
    ax.set_xlabel("FGM attack ε (L2 norm per image, pixels in [0, 1])")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(f"{result.protocol} under FGM: mean and 95% interval, "
                 f"{len(result.seeds)} seed{'s' if len(result.seeds) > 1 else ''}")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _method_label(method):
    return METHODS[method].label if method in METHODS else method


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def plot_all(records, sweep, plots_dir, quick=False):
    """Writes the PNGs of what the records and the sweep hold into `plots_dir`."""
    plt = _pyplot()
    os.makedirs(plots_dir, exist_ok=True)
    collected = collect(records, quick)
    results = collected["protocols"]
    for result in results:
        _protocol_plot(plt, result, os.path.join(plots_dir, plot_name(result.name)))
    if results:
        _differences_plot(plt, results, os.path.join(plots_dir, "differences.png"))
    if collected["speed"]:
        _speed_plot(plt, collected["speed"], os.path.join(plots_dir, "speed.png"))
    if sweep:
        _sweep_plot(plt, sweep, os.path.join(plots_dir, "sweep.png"))
    for result in collect_robustness(records, quick):
        _robustness_plot(plt, result, os.path.join(plots_dir,
                                                   robustness_plot_name(result.protocol)))
