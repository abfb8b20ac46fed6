"""BENCHMARKS.md, rendered from the records of `results.json` and from `sweep.json`.

Nothing here trains: `collect` picks the records of the current settings and computes the
statistics (`stats`), `render` writes the Markdown. The same records always give the same
report, so `--from-json` re-renders it without rerunning anything.
"""

import dataclasses
import math

from benchmarking import robustness, stats
from benchmarking.methods import METHODS, default_methods
from benchmarking.presets import PAPERS, PUBLISHED_ROWS
from benchmarking.protocols import DEFAULT_PROTOCOLS, PROTOCOLS, Protocol
from benchmarking.runner import Planned, estimate_seconds, plan

__all__ = ["ProtocolResult", "Row", "collect", "collect_robustness", "plot_name", "render",
           "robustness_plot_name"]

SCRIPT = "python estimators/benchmark.py"
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def plot_name(protocol_name):
    """The file of a protocol's accuracy plot."""
    return f"accuracy-{protocol_name}.png"


@dataclasses.dataclass
class Row:
    """One method's line of a protocol's table."""

    method: str
    label: str
    accuracy: dict
    mean: float
    std: float
    paired: object = None
    gap: float | None = None
    gap_note: str = ""
    speed_ratio: float | None = None


@dataclasses.dataclass
class ProtocolResult:
    """A protocol's table: its rows (supervised first, the ceiling last) and its records."""

    name: str
    protocol: Protocol
    rows: list
    seeds: list
    records: list

    def row(self, method):
        return next((row for row in self.rows if row.method == method), None)


def _protocol_of(record):
    fields = {field.name for field in dataclasses.fields(Protocol)}
    return Protocol(**{k: v for k, v in record["config"]["protocol"].items() if k in fields})


def _registered(protocol_name, quick):
    if protocol_name not in PROTOCOLS:
        return None
    return PROTOCOLS[protocol_name].quick() if quick else PROTOCOLS[protocol_name]


def _current_fingerprint(protocol_name, method, quick):
    protocol = _registered(protocol_name, quick)
    if protocol is None or method not in METHODS:
        return None
    return Planned("run", protocol, 0, method, quick=quick).fingerprint


def _label(method):
    return METHODS[method].label if method in METHODS else method


def _order(names, registry):
    known = [name for name in registry if name in names]
    return known + sorted(name for name in names if name not in registry)


def collect(records, quick):
    """The statistics of every protocol with runs, from the records of the current settings.

    Of several records of one protocol, method and seed, the latest is used; records of a
    registered protocol and method whose settings (fingerprint) are no longer the current
    ones are left out and counted as stale.

    Returns:
        A dict: `"protocols"` (a list of `ProtocolResult`), `"tf1"` (the latest TF1 record
        or `None`), `"speed"` (`{backbone: {method: ratio, "records": [...]}}`), `"stale"`.
    """
    runs, stale = {}, 0
    for record in records:
        if record.get("quick") != quick:
            continue
        if record["kind"] != "run":
            continue
        expected = _current_fingerprint(record["protocol"], record["method"], quick)
        if expected is not None and record["fingerprint"] != expected:
            stale += 1
            continue
        per_seed = runs.setdefault(record["protocol"], {}).setdefault(record["method"], {})
        per_seed[record["seed"]] = record
    speed = _speed_ratios([r for r in records if r["kind"] == "speed" and r["quick"] == quick])
    results = []
    for name in _order(runs, PROTOCOLS):
        methods = [m for m in _order(runs[name], METHODS) if m != "ceiling"]
        if "supervised" not in methods:
            continue
        # The registry's words for a registered protocol (its numbers are the records').
        protocol = (_registered(name, quick)
                    or _protocol_of(next(iter(runs[name]["supervised"].values()))))
        ceiling = runs.get(protocol.ceiling, {}).get("ceiling", {}) if protocol.ceiling else {}
        results.append(_protocol_result(name, protocol, runs[name], methods, ceiling, speed))
    tf1 = [r for r in records if r["kind"] == "tf1" and r["quick"] == quick]
    return {"protocols": results, "tf1": tf1[-1] if tf1 else None, "speed": speed,
            "stale": stale}


def _speed_ratios(speed_records):
    """Per backbone and method, step time ÷ supervised in the latest record timing both."""
    ratios = {}
    for record in speed_records:
        ms = record["ms_per_step"]
        backbone = ratios.setdefault(record["backbone"], {"records": []})
        backbone["records"].append(record)
        for method, value in ms.items():
            backbone[method] = value / ms["supervised"]
    return ratios


def _accuracies(per_seed):
    return {seed: record["accuracy"] for seed, record in sorted(per_seed.items())}


def _protocol_result(name, protocol, runs, methods, ceiling_runs, speed):
    supervised = _accuracies(runs["supervised"])
    ceiling = _accuracies(ceiling_runs)
    ratios = speed.get(protocol.backbone, {})
    rows = []
    for method in methods:
        accuracy = _accuracies(runs[method])
        mean, std = stats.spread(list(accuracy.values()))
        row = Row(method, _label(method), accuracy, mean, std, speed_ratio=ratios.get(method))
        if method != "supervised" and set(accuracy) & set(supervised):
            row.paired = stats.paired_difference(accuracy, supervised)
            seeds = [s for s in row.paired.seeds if s in ceiling]
            if seeds:
                row.gap = stats.gap_closed(
                    stats.spread([accuracy[s] for s in seeds])[0],
                    stats.spread([supervised[s] for s in seeds])[0],
                    stats.spread([ceiling[s] for s in seeds])[0])
                if len(seeds) < len(row.paired.seeds):
                    row.gap_note = f" (seeds {', '.join(map(str, seeds))})"
        rows.append(row)
    if ceiling:
        mean, std = stats.spread(list(ceiling.values()))
        rows.append(Row("ceiling", _label("ceiling"), ceiling, mean, std))
    seeds = sorted({seed for row in rows for seed in row.accuracy})
    records = [r for per_seed in runs.values() for r in per_seed.values()]
    records += list(ceiling_runs.values())
    return ProtocolResult(name, protocol, rows, seeds, records)


# ----------------------------------------------------------------------------- text pieces
def _signed(value):
    return f"{value:+.4f}"


def _interval(paired):
    if math.isnan(paired.low):
        return f"{_signed(paired.mean)} (1 seed: no interval)"
    return f"{_signed(paired.mean)} [{_signed(paired.low)}, {_signed(paired.high)}]"


def _verdict(paired):
    return "**wins**" if paired.verdict == stats.WINS else paired.verdict


def _command(*parts, quick=False):
    flags = [part for part in parts if part]
    return "`" + " ".join([SCRIPT, *flags] + (["--quick"] if quick else [])) + "`"


def _seeds_flag(seeds):
    return "" if tuple(seeds) == DEFAULT_SEEDS else "--seeds " + " ".join(map(str, seeds))


def _provenance(records):
    """Machine, commits, dates and wall time of the records behind a section."""
    machines = []
    for record in records:
        info = record["machine"]
        text = (f"{info['nproc']} CPUs ({info['cpu']}), {info['ram']} RAM, "
                f"{'a GPU' if info.get('gpu') else 'no GPU'}; TensorFlow {info['tensorflow']}, "
                f"Keras {info['keras']}, Python {info['python']}")
        if text not in machines:
            machines.append(text)
    commits = sorted({record["commit"] for record in records})
    times = sorted(record["time"] for record in records)
    wall = sum(record["seconds"] for record in records)
    return (f"Machine: {'; '.join(machines)}. Commit: {', '.join(commits)}. Runs from "
            f"{times[0]} to {times[-1]}, {len(records)} run{'s' if len(records) > 1 else ''}, "
            f"{wall / 60:.1f} min of wall "
            f"time.")


def _hyper_value(value):
    """A hyper-parameter as the report prints it: numbers in `:g`, anything else (a string,
    `None` for "the model's default", a flag, a tuple) as Python writes it."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return repr(value)


def _hyper_text(result):
    parts = []
    for row in result.rows:
        hyper = next(r for r in result.records if r["method"] == row.method)["config"]
        hyper = hyper.get("hyper", {})
        if hyper and row.method != "ceiling":
            values = ", ".join(f"{k}={_hyper_value(v)}" for k, v in sorted(hyper.items()))
            parts.append(f"{row.label}: {values}")
    return ("Hyper-parameters (`benchmarking/methods.py`; no seed factor num_labeled / train "
            "rows): " + "; ".join(parts) + ".") if parts else ""


def _summary_sentence(result):
    """Which methods win, lose or show no significant difference: exactly the intervals."""
    groups = {stats.WINS: [], stats.LOSES: [], stats.NO_DIFFERENCE: []}
    for row in result.rows:
        if row.paired is not None and row.method != "ceiling":
            groups[row.paired.verdict].append(f"{row.label} ({_interval(row.paired)})")
    parts = []
    if groups[stats.WINS]:
        parts.append("Beats supervised-only (the whole 95% interval of the paired "
                     "difference is above 0): " + ", ".join(groups[stats.WINS]) + ".")
    if groups[stats.NO_DIFFERENCE]:
        parts.append("No significant difference from supervised-only (the interval "
                     "contains 0): " + ", ".join(groups[stats.NO_DIFFERENCE]) + ".")
    if groups[stats.LOSES]:
        parts.append("Worse than supervised-only (the whole interval is below 0): "
                     + ", ".join(groups[stats.LOSES]) + ".")
    return " ".join(parts)


def _protocol_section(number, result, plots, quick):
    protocol = result.protocol
    methods = [row.method for row in result.rows if row.method not in ("ceiling",)]
    methods_flag = ("" if tuple(methods) == default_methods()
                    else "--methods " + " ".join(methods))
    command = _command("--protocols", result.name, _seeds_flag(result.seeds), methods_flag,
                       quick=quick)
    lines = [
        f"### 1.{number} `{result.name}`: {protocol.title}", "",
        (protocol.why + " " if protocol.why else "")
        + "Command (runs already in `results.json` are skipped; add seeds or methods to "
        f"extend): {command}  ",
        _provenance(result.records), "",
        "Protocol: " + protocol.describe()
        + (f" The ceiling's runs are those of `{protocol.ceiling}`."
           if protocol.ceiling and protocol.ceiling != result.name else ""),
        "", _hyper_text(result), "",
        f"| method | accuracy, mean ± std | per seed ({', '.join(map(str, result.seeds))}) | "
        f"− supervised, mean [95% CI] | verdict | gap closed | step time ÷ supervised |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result.rows:
        per_seed = ", ".join(f"{row.accuracy[s]:.4f}" if s in row.accuracy else "–"
                             for s in result.seeds)
        if row.method == "supervised":
            difference, verdict, gap = "–", "reference", "0%"
        elif row.method == "ceiling":
            difference, verdict, gap = "–", "–", "100%"
        elif row.paired is None:
            difference, verdict, gap = "no seed in common with supervised-only", "–", "–"
        else:
            difference, verdict = _interval(row.paired), _verdict(row.paired)
            gap = ("n/a" if row.gap is None else f"{100 * row.gap:.0f}%") + row.gap_note
        ratio = "–" if row.speed_ratio is None else f"{row.speed_ratio:.2f}"
        lines.append(f"| {row.label} | {row.mean:.4f} ± {row.std:.4f} | {per_seed} | "
                     f"{difference} | {verdict} | {gap} | {ratio} |")
    lines += [
        "", _summary_sentence(result), "",
        f"![{result.name}: accuracy and paired difference with 95% intervals]"
        f"({plots}/{plot_name(result.name)})", "",
    ]
    return lines + _comparison_lines(result) + _pseudo_label_section(result)


# The per-epoch figures of the pseudo-label methods' records (`training.MONITOR_ROWS`).
_PSEUDO_LABEL_COLUMNS = (
    ("mask_rate", "mask in training"),
    ("pseudo_label_mask_rate", "kept"),
    ("pseudo_label_accuracy", "kept right"),
    ("pseudo_label_accuracy_all", "argmax right"),
)


_VERSUS = {stats.WINS: "better", stats.LOSES: "worse",
           stats.NO_DIFFERENCE: stats.NO_DIFFERENCE}


def _epoch_means(records, name):
    """Per epoch, the mean of `history[name]` over `records` (NaN where none has a value)."""
    columns = [r["history"][name] for r in records]
    means = []
    for epoch in range(max(len(c) for c in columns)):
        values = [c[epoch] for c in columns if epoch < len(c) and not math.isnan(c[epoch])]
        means.append(sum(values) / len(values) if values else math.nan)
    return means


def _pseudo_label_section(result):
    """Mask rate and pseudo-label accuracy over training, for the methods whose records
    carry `PseudoLabelMonitor`'s figures."""
    lines = []
    for row in result.rows:
        records = [r for r in result.records if r["method"] == row.method
                   and "pseudo_label_mask_rate" in r.get("history", {})]
        if not records:
            continue
        seeds = ", ".join(str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]))
        means = {name: _epoch_means(records, name) for name, _ in _PSEUDO_LABEL_COLUMNS}
        lines += [
            f"#### {row.label}: its pseudo-labels over training", "",
            f"Per epoch, the mean over seeds {seeds} (the records that hold these figures): "
            "`mask in training` is the share of a batch's unlabeled rows whose pseudo-label "
            "passed the threshold inside the training step (input noise, dropout and any weak "
            "augmentation on); after each epoch, on the first 2,000 unlabeled rows in inference "
            "mode and scored with their hidden labels, `kept` is the share that passes the "
            "threshold, `kept right` the accuracy of those pseudo-labels and `argmax right` "
            "the accuracy of the prediction on all of them.", "",
            "| epoch | " + " | ".join(title for _, title in _PSEUDO_LABEL_COLUMNS) + " |",
            "|---" * (len(_PSEUDO_LABEL_COLUMNS) + 1) + "|",
        ]
        for epoch in range(len(means["pseudo_label_mask_rate"])):
            lines.append(f"| {epoch + 1} | " + " | ".join(
                f"{means[name][epoch]:.3f}" for name, _ in _PSEUDO_LABEL_COLUMNS) + " |")
        kept, right, argmax = (means[name][-1] for name in (
            "pseudo_label_mask_rate", "pseudo_label_accuracy", "pseudo_label_accuracy_all"))
        text = (f"After the last epoch {100 * kept:.0f}% of the monitored rows pass the "
                f"threshold and {100 * right:.1f}% of their pseudo-labels are right, while the "
                f"prediction is right on {100 * argmax:.1f}% of all of them")
        if right - argmax > 0.05:
            text += (": the rows that pass are mostly rows the model already classifies "
                     "right, so the unlabeled term adds little where the model errs")
        lines += ["", text + ".", ""]
    return lines


def _comparison_lines(result):
    """Each method paired with the entry it names in `compare_with`, seed by seed."""
    lines = []
    for row in result.rows:
        method = METHODS.get(row.method)
        other = result.row(method.compare_with) if method and method.compare_with else None
        if other is None or not set(row.accuracy) & set(other.accuracy):
            continue
        paired = stats.paired_difference(row.accuracy, other.accuracy)
        lines.append(f"- {row.label} − {other.label}, paired over seeds "
                     f"{', '.join(map(str, paired.seeds))}: {_interval(paired)}, "
                     f"{_VERSUS[paired.verdict]}.")
    return ["Next to the method each modifies or is expected to beat:", "", *lines, ""] \
        if lines else []


def _plan_text(records):
    """The default run and its planned cost, from the measured runs when there are any."""
    _, todo = plan(DEFAULT_PROTOCOLS, default_methods(), DEFAULT_SEEDS,
                   ("runs", "tf1", "speed"), False, [])
    minutes = sum(estimate_seconds(run, records) for run in todo) / 60
    return (f"The full default run, `make benchmark` = {_command()}: protocols "
            f"{', '.join(f'`{p}`' for p in DEFAULT_PROTOCOLS)}, methods "
            f"{', '.join(_label(m) for m in default_methods())} and the all-labels ceiling, "
            f"seeds {', '.join(map(str, DEFAULT_SEEDS))}: {len(todo)} runs, about "
            f"{minutes:.0f} min on 2 CPU cores (planned from the measured runs below where "
            f"there are some). It resumes where it stopped and skips the runs already in "
            f"`results.json`.")


def _sweep_section(sweep, plots):
    lines = ["## 2. Hyper-parameter sweep", ""]
    if not sweep:
        return lines + ["_No `sweep.json` yet: nothing to show._", ""]
    groups = {}
    for record in sweep:
        key = (record["protocol"], record["method"], record["param"])
        groups.setdefault(key, {}).setdefault(_value_key(record["value"]), []).append(record)
    commands = sorted({record["command"] for record in sweep if record.get("command")})
    lines += [
        "Validation accuracy (`val_accuracy` of `sweep.json`: rows carved from the training "
        "rows, not the test set) for each swept value of one hyper-parameter, mean ± std over "
        "the seeds; (best) marks the highest mean of its group. The tables above use the "
        "settings of `benchmarking/methods.py`, listed above each table."
        + (" Command: " + "; ".join(f"`{c}`" for c in commands) + "." if commands else ""),
        "",
        "| protocol | method | parameter | value | validation accuracy, mean ± std | seeds |",
        "|---|---|---|---|---|---|",
    ]
    for (protocol, method, param), values in sorted(groups.items(), key=lambda kv: kv[0]):
        means = {value: stats.spread([r["val_accuracy"] for r in rs])
                 for value, rs in values.items()}
        best = max(means, key=lambda value: means[value][0])
        for value in sorted(values, key=_sort_key):
            mean, std = means[value]
            mark = " (best)" if value == best and len(values) > 1 else ""
            seeds = ", ".join(str(r["seed"]) for r in sorted(values[value],
                                                             key=lambda r: r["seed"]))
            lines.append(f"| {protocol} | {_label(method)} | {param} | {value}{mark} | "
                         f"{mean:.4f} ± {std:.4f} | {seeds} |")
    return lines + ["", f"![hyper-parameter sweep]({plots}/sweep.png)", ""]


def _value_key(value):
    """A hashable, printable form of a swept value (numbers stay numbers)."""
    return tuple(value) if isinstance(value, list) else value


def _sort_key(value):
    return (0, value, "") if isinstance(value, (int, float)) else (1, 0, str(value))


def _tf1_section(record, plots, quick):
    lines = ["## 3. The seed's TF1 graph next to the Keras port", ""]
    if record is None:
        return lines + [f"_Not measured yet: {_command('--sections tf1', quick=quick)}._", ""]
    budget = record["config"]["tf1"]
    protocol = _protocol_of(record)
    units = "-".join(str(u) for u in budget["dense_units"])
    tf1, keras_run = record["tf1"], record["keras"]
    return lines + [
        f"Command: {_command('--sections tf1', _seeds_flag([record['seed']]), quick=quick)}  ",
        _provenance([record]), "",
        f"Protocol `{record['protocol']}`'s data, seed {record['seed']}, flattened to 784 "
        f"features; a dense network 784-{units}-10 (ReLU) with the same initial weights in "
        f"both, Adam lr {protocol.learning_rate:g} (epsilon 1e-8 in both), "
        f"{protocol.epochs} epoch{'s' if protocol.epochs > 1 else ''} ({record['steps']} "
        f"steps) over the same seeded batch sequence of {protocol.batch_size} rows drawn "
        f"alike, TE with the seed's target, α {budget['alpha']}, w_max "
        f"{budget['max_unsupervised_weight']:g} × "
        f"{protocol.num_labeled}/{protocol.train_size} (the seed's factor), ramp-up "
        f"{budget['ramp_up_epochs']} epochs (the epoch fed to the TF1 graph is clamped like "
        f"tfssl's). TF1: `tfssl.reference.temporal_ensemble.TemporalEnsembleGraph` "
        f"(`tf.compat.v1` graph and session, one `session.run` per step); Keras: "
        f"`tfssl.models.TemporalEnsembling.fit`, one step per call. Mean step time over the "
        f"steps after the first epoch (tracing).",
        "",
        "| implementation | test accuracy | mean ms / step | total s |",
        "|---|---|---|---|",
        f"| TF1 graph (seed 000's step) | {tf1['accuracy']:.4f} | {tf1['ms_per_step']:.2f} | "
        f"{tf1['seconds']:.1f} |",
        f"| Keras `TemporalEnsembling` | {keras_run['accuracy']:.4f} | "
        f"{keras_run['ms_per_step']:.2f} | {keras_run['seconds']:.1f} |",
        "",
    ]


def _speed_section(speed, plots, quick, step_costs=None):
    lines = ["## 4. Speed", ""]
    if not speed:
        lines += [f"_Not measured yet: {_command('--sections speed', quick=quick)}._", ""]
        return lines + _step_cost_lines(step_costs)
    for backbone, ratios in speed.items():
        latest = ratios["records"][-1]
        budget = latest["config"]["speed"]
        command = _command("--sections speed", "--protocols", latest["protocol"], quick=quick)
        lines += [
            f"Command: {command}  ",
            _provenance(ratios["records"]), "",
            f"Backbone `{backbone}`, protocol `{latest['protocol']}`'s batches, one process: "
            f"`train_on_batch` on prepared numpy batches (one step per call). After "
            f"{budget['warmup']} warm-up steps each, {budget['rounds']} rounds in which every "
            f"method runs {budget['steps']} steps in turn (order rotated each round); median "
            f"over rounds. A method measured in an earlier record is shown with its ratio "
            f"there.",
            "",
            "| method | median ms / step | × supervised |",
            "|---|---|---|",
        ]
        for method in _order([m for m in ratios if m != "records"], METHODS):
            record = next(r for r in reversed(ratios["records"]) if method in r["ms_per_step"])
            lines.append(f"| {_label(method)} | {record['ms_per_step'][method]:.1f} | "
                         f"{ratios[method]:.2f} |")
        lines.append("")
    return lines + [f"![speed]({plots}/speed.png)", ""] + _step_cost_lines(step_costs)


def _step_cost_lines(step_costs):
    """The step-cost subsections from benchmarks/speed.json's record, or nothing."""
    if not step_costs:
        return []
    return [
        "The subsections below come from `benchmarks/step_cost.py`'s record "
        "(`benchmarks/speed.json`), each with its command: CPU time of one process with one "
        "TensorFlow thread (`--clock cpu --threads 1`), steadier than wall time on a shared "
        "machine.", "",
        speed_markdown(step_costs),
    ]


# The step-cost subsections of section 4, from the record that benchmarks/step_cost.py
# --record writes (benchmarks/speed.json): the rows of each table, (key, label) in order.
STEP_COST_ROWS = {
    "speed": [("supervised", "Supervised Keras step"),
              ("temporal_ensembling", "Temporal Ensembling"),
              ("mean_teacher", "Mean Teacher"), ("pi_model", "Π-model")],
    "tf1": [("tf1_graph", "TF1 graph, seed 000's TE step (`session.run`)"),
            ("supervised_fit", "Keras supervised `fit`, same network"),
            ("te_fit", "Keras TE `fit`"),
            ("te_fit_steps_per_execution_10", "Keras TE `fit`, `steps_per_execution=10`"),
            ("te_fit_xla", "Keras TE `fit`, `jit_compile=True`"),
            ("te_train_function", "Keras TE, the compiled train function called directly"),
            ("te_train_on_batch", "Keras TE `train_on_batch`")],
}
STEP_COST_PROFILE_COLUMNS = [("te_fit", "Keras TE `fit`"),
                   ("te_fit_steps_per_execution_10", "TE `fit`, `steps_per_execution=10`"),
                   ("tf1_graph", "TF1 `session.run`")]
# The parts of a profiled step, in the order of the profile table (step_cost.PROFILE_PARTS
# names the op scopes of the middle ones).
STEP_COST_PARTS = ("fit loop and callbacks", "data iterator", "batch checks",
                   "non-finite guard", "metrics", "the step itself")



def _step_cost_provenance(entry):
    return (f"Command: `{entry['command']}`  \nMachine: {entry['machine']}. "
            f"Commit: {entry['commit']}. Run: {entry['date']}.")


def _step_cost_subsection(title, entry, header, rows):
    """A `###` subsection: its title, the entry's command and machine, and a table."""
    return [f"### {title}", "", _step_cost_provenance(entry), "",
            *_markdown_table(header, rows), ""]


def _markdown_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def speed_markdown(record):
    """The markdown of BENCHMARKS.md's speed section from a `speed.json` record.

    Example:

    ```python
    import json
    from benchmarking import report   # estimators/ on sys.path
    with open("benchmarks/speed.json") as file:
        print(report.speed_markdown(json.load(file)))
    ```

    Args:
        record: The record: `{"sections": {key: entry}}` as `main` writes it.

    Returns:
        The section's markdown (subsections with their tables and commands), without its
        `##` title.
    """
    sections = record["sections"]
    lines = []
    if "speed" in sections:
        result = sections["speed"]["result"]
        lines += _step_cost_subsection(
            "Step cost × supervised (section 4's protocol, `train_on_batch`)", sections["speed"],
            ["method", "median ms / step", "× supervised (IQR)"],
            [[label, f"{result[key]['ms']:.2f}",
              f"{result[key]['ratio']:.3f} ({result[key]['ratio_iqr'][0]:.2f}–"
              f"{result[key]['ratio_iqr'][1]:.2f})"]
             for key, label in STEP_COST_ROWS["speed"] if key in result])
    if "tf1" in sections:
        result = sections["tf1"]["result"]
        lines += _step_cost_subsection(
            "The Keras TE step next to the seed's TF1 graph (section 3's protocol)",
            sections["tf1"], ["step", "ms / step", "× TF1 graph step"],
            [[label, f"{result[key]['ms']:.2f}", f"{result[key]['ratio']:.2f}"]
             for key, label in STEP_COST_ROWS["tf1"] if key in result])
    if "profile" in sections:
        entry = sections["profile"]
        result = entry["result"]
        columns = [(key, label) for key, label in STEP_COST_PROFILE_COLUMNS if key in result]
        parts = STEP_COST_PARTS
        lines += ["### Where a step's time goes (TensorFlow profiler, section 3's protocol)", "",
                  _step_cost_provenance(entry), "",
                  "ms per step, untraced, split by each part's share of a traced run: "
                  "outside the step function (Keras: the fit loop, the callbacks and the "
                  "Python call of the `tf.function`; TF1: the Python loop feeding "
                  "`session.run`), then the step function's time by its ops' name "
                  "scopes.", ""]
        labels = {"fit loop and callbacks": "outside the step function (Python)"}
        rows = [[labels.get(part, part), *(f"{result[key][part]:.2f}" if part in result[key]
                                           else "–" for key, _ in columns)] for part in parts]
        rows.append(["**total**", *(f"**{result[key]['ms']:.2f}**" for key, _ in columns)])
        rows.append(["× TF1 graph step", *(f"{result[key]['ratio']:.2f}" for key, _ in columns)])
        lines += _markdown_table(["part", *(label for _, label in columns)], rows)
        lines.append("")
    for key in sorted(k for k in sections if k.split(" ")[0] == "xla"):
        entry = sections[key]
        result = entry["result"]
        flags = entry["xla_flags"] or "none"
        lines += [f"### XLA on CPU (`XLA_FLAGS`: {flags})", "", _step_cost_provenance(entry), ""]
        header = ["method", "graph step × supervised", "`jit_compile=True` × supervised"]
        lines += _markdown_table(header, [
            [label, f"{result[name]['ratio']:.2f}", f"{result[name + '_xla']['ratio']:.2f}"]
            for name, label in STEP_COST_ROWS["speed"][1:] if name + "_xla" in result])
        lines.append("")
    return "\n".join(lines)


def _published_section():
    lines = [
        "## 5. Published numbers (TF1-era reference implementations)", "",
        "Test error (%), lower is better, as published (sources: the References below). Not "
        "measured by this benchmark: the presets below need a GPU and the CIFAR-10 or SVHN "
        "files, and were **not run**; `--preset NAME --dry-run` prints the configuration "
        "each would run.", "",
        "| setting | supervised | Π-model | Temporal Ens. | Mean Teacher | source | preset |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in PUBLISHED_ROWS]
    return lines + [
        "", "Text, the seed author's TF1 project logs (toutiao 15-class news titles, accuracy "
        "/ macro-F1): fastText 0.83 / 0.77; fastText + sentence mixup 0.85 / 0.78; fastText "
        "+ Temporal Ensembling 0.85 / 0.78 (no unlabeled data added); BERT 0.88 / 0.82; "
        "BERT + TE 0.88 / 0.82. No preset (the corpus is not public here).", "",
        "Presets (the papers' hyper-parameters): 300 epochs, batch 100, Adam lr 0.003 with "
        "`tfssl.schedules.RampUpDown` (ramp-up 80 epochs, lr → 0 and β1 0.9 → 0.5 over the "
        "last 50), unsupervised weight ramp-up 80 epochs to w_max × labeled/total (w_max 100 "
        "Π, 30 TE, 100 MT), α 0.6, MT EMA 0.99 → 0.999, full-width `conv_net` "
        "(128/256/512), noise σ 0.15, translation ±2 px, horizontal flip for CIFAR-10 only. "
        "Not reproduced: the TE paper's ZCA whitening of CIFAR-10.", "",
        "```",
        f"{SCRIPT} --preset cifar10-4000 --data-dir CIFAR10_DIR",
        f"{SCRIPT} --preset svhn-1000 --data-dir SVHN_DIR",
        f"{SCRIPT} --preset svhn-500 --data-dir SVHN_DIR",
        "```", "",
    ]


def _references():
    papers = dict(PAPERS)
    for method in METHODS.values():
        if method.reference and method.reference not in papers.values():
            papers[method.label] = method.reference
    lines = ["## References", ""]
    lines += [f"- {name}: {citation}." if not citation.endswith(".") else
              f"- {name}: {citation}" for name, citation in papers.items()]
    return lines + [""]


def _overview(results):
    """One line per method: its paired difference and verdict under every protocol."""
    if not results:
        return []
    methods = _order({row.method for r in results for row in r.rows
                      if row.method not in ("supervised", "ceiling")}, METHODS)
    lines = [
        "| method | " + " | ".join(f"`{r.name}`" for r in results) + " |",
        "|---|" + "---|" * len(results),
    ]
    for method in methods:
        cells = []
        for result in results:
            row = result.row(method)
            cells.append("–" if row is None or row.paired is None else
                         f"{_interval(row.paired)}, {_verdict(row.paired)}")
        lines.append(f"| {_label(method)} | " + " | ".join(cells) + " |")
    return lines + [""]


def collect_robustness(records, quick):
    """`robustness.collect` on the records of the current settings."""
    def fingerprint(protocol_name, method):
        protocol = _registered(protocol_name, quick)
        if protocol is None or method not in METHODS:
            return None
        return Planned("robustness", protocol, 0, method, quick=quick).fingerprint

    return robustness.collect(records, quick, fingerprint)


def _robustness_section(results, plots, quick):
    lines = ["## 6. Robustness: accuracy under an FGM attack", ""]
    if not results:
        command = _command("--protocols clean-1000 --methods adversarial --seeds 0 1 2",
                           "--sections runs robustness", quick=quick)
        return lines + [f"_Not measured yet: {command}._", ""]
    for result in results:
        epsilon = next((r["config"]["hyper"]["epsilon"] for r in result.records
                        if r["method"] == "adversarial"), None)
        command = _command("--protocols", result.protocol, "--methods adversarial",
                           _seeds_flag(result.seeds),
                           "--sections runs robustness", quick=quick)
        methods = result.methods
        header = " | ".join(f"{_label(m)}, mean ± std" for m in methods)
        lines += [
            f"Command: {command}  ",
            _provenance(result.records), "",
            f"Protocol `{result.protocol}` (section 1), seeds {', '.join(map(str, result.seeds))}"
            f". Supervised-only and adversarial training (FGM during training"
            + (f", ε = {epsilon:g} chosen on validation rows, section 2" if epsilon else "")
            + ") are trained exactly as their section-1 runs (same seeds, backbone, batches "
            "and steps; these records train them again), then every test row is attacked "
            "with the fast gradient method, `tfssl.models.adversarial_inputs`: "
            "x + ε · g / ‖g‖₂ with g the gradient of the cross-entropy at the true label "
            "with respect to the input, the network in inference mode; the L2 norm is per "
            "image over its 784 pixels scaled to [0, 1] (a test image's own norm is 12.2 "
            "on average), and the attacked images are not clipped to [0, 1]. ε = 0 is the "
            "clean test accuracy. The interval is the paired 95% interval of adversarial − "
            "supervised at each ε, seed by seed.", "",
            f"| ε (L2, per image) | {header} | adversarial − supervised, mean [95% CI] | "
            f"verdict |",
            "|---|" + "---|" * len(methods) + "---|---|",
        ]
        for position, epsilon_value in enumerate(result.epsilons):
            cells = []
            for method in methods:
                mean, std = stats.spread(list(result.at(method, position).values()))
                cells.append(f"{mean:.4f} ± {std:.4f}")
            paired = result.paired(position) if "adversarial" in methods else None
            difference = "–" if paired is None else _interval(paired)
            verdict = "–" if paired is None else _verdict(paired)
            lines.append(f"| {epsilon_value:g} | " + " | ".join(cells)
                         + f" | {difference} | {verdict} |")
        lines += ["", f"![{result.protocol}: accuracy under FGM attacks]"
                      f"({plots}/{robustness_plot_name(result.protocol)})", ""]
    return lines


def robustness_plot_name(protocol_name):
    """The file of a protocol's robustness plot (`robustness.png` for clean-1000)."""
    return "robustness.png" if protocol_name == "clean-1000" else \
        f"robustness-{protocol_name}.png"


def render(records, sweep=None, plots="benchmarks", quick=False, step_costs=None):
    """BENCHMARKS.md from the records (`--quick` ones when `quick`), the sweep records and
    the step-cost record of benchmarks/step_cost.py (`speed.json`)."""
    collected = collect(records, quick)
    results = collected["protocols"]
    lines = [
        "# tfssl benchmarks", "",
        "Produced by `estimators/benchmark.py` from the run records in "
        f"`{plots}/results.json`; every number is measured by those runs, except in section "
        f"5 (published numbers, with their sources). Re-render without training: "
        f"`{SCRIPT} --from-json {plots}/results.json`.",
        "",
    ]
    if quick:
        lines += ["**This is a `--quick` run: a tiny budget that only exercises the code; its "
                  "numbers mean nothing.**", ""]
    lines += [
        "How to read the tables. Every method runs with the same seeds as supervised-only, "
        "and a seed fixes the labeled rows, the wrong labels, the shuffles and the initial "
        "weights; so each method is compared with supervised-only seed by seed. The "
        "interval is the 95% Student-t confidence interval of the mean of those paired "
        "differences. A method **wins** only when the whole interval is above 0; when it "
        "contains 0 the table says *no significant difference*, whatever the sign of the "
        "mean. Gap closed = (method − supervised) / (ceiling − supervised) on the mean "
        "accuracies over the same seeds, the ceiling being the same backbone and steps "
        "trained on every training row with its true label. Step time ÷ supervised comes "
        "from section 4. `docs/benchmark.md` explains these figures and the findings a "
        "user needs.", "",
        _plan_text([r for r in records if not r.get("quick")]), "",
    ]
    if collected["stale"]:
        lines += [f"{collected['stale']} older records ran with settings that are no longer "
                  f"the current ones and are not shown.", ""]
    lines += ["## 1. Accuracy", ""]
    if results:
        lines += ["Paired difference to supervised-only, mean [95% CI], and verdict, per "
                  "protocol:", ""] + _overview(results)
        lines += [f"![paired differences per protocol]({plots}/differences.png)", ""]
        for number, result in enumerate(results, 1):
            lines += _protocol_section(number, result, plots, quick)
    else:
        lines += [f"_Not measured yet: {_command(quick=quick)}._", ""]
    lines += _sweep_section(sweep, plots)
    lines += _tf1_section(collected["tf1"], plots, quick)
    lines += _speed_section(collected["speed"], plots, quick, step_costs)
    lines += _published_section()
    lines += _robustness_section(collect_robustness(records, quick), plots, quick)
    lines += _references()
    return "\n".join(lines)
