"""Tests of estimators/benchmark.py: --quick end to end, the statistics, resume, re-render."""

import dataclasses
import json
import os
import sys

import numpy as np
import pytest
from scipy import stats as scipy_stats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "estimators"))

import benchmark  # noqa: E402
from benchmarking import methods, protocols, report, runner, stats  # noqa: E402

SECTIONS = (
    "## 1. Accuracy",
    "## 2. Hyper-parameter sweep",
    "## 3. The seed's TF1 graph next to the Keras port",
    "## 4. Speed",
    "## 5. Published numbers",
    "## 6. Robustness",
    "## References",
)
QUICK_ARGV = ["--quick", "--seeds", "0", "1", "--protocols", "clean-1000", "noise20"]


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _table_rows(section):
    """Data rows of the Markdown tables in a section, as lists of cell strings."""
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench")
    output = folder / "BENCHMARKS.md"
    # A sweep in the agreed format: {method, param, value, seed, val_accuracy, protocol}.
    (folder / "benchmarks").mkdir()
    sweep = [
        {"method": "temporal_ensembling", "param": "alpha", "value": value, "seed": seed,
         "val_accuracy": 0.8 + 0.01 * value + 0.001 * seed, "protocol": "clean-1000"}
        for value in (0.3, 0.6, 0.9) for seed in (0, 1)
    ] + [{"method": "temporal_ensembling", "param": "target", "value": "paper", "seed": 0,
          "val_accuracy": 0.7, "protocol": "noise20"}]
    (folder / "benchmarks" / "sweep.json").write_text(json.dumps(sweep))
    result = benchmark.main([*QUICK_ARGV, "--output", str(output)])
    return output, result


def test_quick_report_has_every_section_and_plot(quick_run):
    output, _ = quick_run
    text = output.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert heading in text
    assert "Not measured yet" not in text
    assert "arXiv:1610.02242" in text and "arXiv:1703.01780" in text
    plots = output.parent / "benchmarks"
    for name in ("accuracy-clean-1000.png", "accuracy-noise20.png", "differences.png",
                 "speed.png", "sweep.png", "robustness.png"):
        assert (plots / name).stat().st_size > 1000
        assert f"](benchmarks/{name})" in text
    # Each protocol's section states the command that resumes or extends it.
    assert ("`python estimators/benchmark.py --protocols noise20 --seeds 0 1 --quick`"
            in text)


def test_quick_run_records_every_planned_run(quick_run):
    output, result = quick_run
    records = json.loads((output.parent / "benchmarks" / "results.json").read_text())
    runs = [r for r in records if r["kind"] == "run"]
    # 2 protocols x 4 methods x 2 seeds, and the clean ceiling for both seeds.
    assert len(runs) == 2 * 4 * 2 + 2
    assert {(r["protocol"], r["method"], r["seed"]) for r in runs} >= {
        ("clean-1000", "ceiling", 0), ("clean-1000", "ceiling", 1),
        ("noise20", "temporal_ensembling", 1)}
    for record in runs:
        assert set(record) >= {"protocol", "method", "seed", "accuracy", "seconds", "steps",
                               "commit", "time", "quick", "fingerprint", "config"}
        assert 0.0 <= record["accuracy"] <= 1.0 and record["quick"] is True
        epochs = record["config"]["protocol"]["epochs"]
        assert len(record["history"]["loss"]) == epochs
    # Robustness: supervised-only and adversarial training on clean-1000, both seeds; the
    # supervised trainings also wrote their run records.
    attacked = [r for r in records if r["kind"] == "robustness"]
    assert len(attacked) == 2 * 2
    assert len(records) == len(runs) + 2 + len(attacked)
    assert len(result["todo"]) + sum(run.also_run for run in result["todo"]) == len(records)


def test_quick_table_shows_the_records_and_their_paired_interval(quick_run):
    output, result = quick_run
    text = output.read_text(encoding="utf-8")
    section = _section(text, "### 1.2 `noise20`")
    rows = {row[0]: row for row in _table_rows(section)[1:]}
    assert list(rows) == ["Supervised only", "Π-model", "Temporal Ensembling", "Mean Teacher",
                          "All labels (ceiling)"]
    accuracy = {(r["method"], r["seed"]): r["accuracy"] for r in result["records"]
                if r["kind"] == "run" and r["protocol"] == "noise20"}
    te = [accuracy[("temporal_ensembling", s)] for s in (0, 1)]
    supervised = [accuracy[("supervised", s)] for s in (0, 1)]
    assert rows["Temporal Ensembling"][2] == f"{te[0]:.4f}, {te[1]:.4f}"
    differences = np.subtract(te, supervised)
    half = scipy_stats.t.ppf(0.975, 1) * np.std(differences, ddof=1) / np.sqrt(2)
    mean = differences.mean()
    assert rows["Temporal Ensembling"][3] == (
        f"{mean:+.4f} [{mean - half:+.4f}, {mean + half:+.4f}]")
    expected = ("**wins**" if mean - half > 0 else "loses" if mean + half < 0
                else "no significant difference")
    assert rows["Temporal Ensembling"][4] == expected


def test_from_json_rerenders_the_same_report(quick_run, tmp_path):
    output, _ = quick_run
    again = tmp_path / "BENCHMARKS.md"
    plots = tmp_path / "benchmarks"
    plots.mkdir()
    (plots / "sweep.json").write_text(
        (output.parent / "benchmarks" / "sweep.json").read_text())
    benchmark.main(["--from-json", str(output.parent / "benchmarks" / "results.json"),
                    "--output", str(again)])
    assert again.read_text(encoding="utf-8") == output.read_text(encoding="utf-8")


def test_resume_skips_existing_records_and_reruns_changed_settings(quick_run, monkeypatch):
    output, _ = quick_run
    argv = [*QUICK_ARGV, "--output", str(output), "--dry-run"]
    assert benchmark.main(argv)["todo"] == []
    # One more seed: only its runs are planned.
    extended = benchmark.main([*argv, "--seeds", "0", "1", "2"])
    assert {run.seed for run in extended["todo"] if run.kind == "run"} == {2}
    assert len([run for run in extended["todo"] if run.kind == "run" or run.also_run]) == (
        2 * 4 + 1)
    # Words and steps per call change no number: nothing reruns.
    clean = protocols.PROTOCOLS["clean-1000"]
    monkeypatch.setitem(protocols.PROTOCOLS, "clean-1000", dataclasses.replace(
        clean, title="renamed", why="reworded", steps_per_execution=7))
    assert benchmark.main(argv)["todo"] == []
    # A changed hyper-parameter reruns that method's runs, and only those.
    te = methods.METHODS["temporal_ensembling"]
    monkeypatch.setitem(methods.METHODS, "temporal_ensembling",
                        methods.Method(**{**vars(te), "hyper": {**te.hyper, "alpha": 0.5}}))
    changed = benchmark.main(argv)["todo"]
    assert {(run.kind, run.method) for run in changed} == {
        ("run", "temporal_ensembling"), ("speed", None)}


def test_a_registered_method_gets_its_row_from_one_entry(quick_run, monkeypatch, tmp_path):
    output, _ = quick_run
    records = runner.load_records(str(output.parent / "benchmarks" / "results.json"))
    monkeypatch.setitem(methods.METHODS, "pi_model_sg", methods.Method(
        label="Π-model, stopped target",
        build=lambda backbone, protocol, hyper: methods.models.PiModel(
            backbone, stop_gradient_target=True,
            **methods.consistency_kwargs(protocol, hyper)),
        hyper={"max_unsupervised_weight": 30.0, "ramp_up_epochs": 5},
    ))
    assert "pi_model_sg" in methods.default_methods()
    _, todo = runner.plan(["clean-1000"], ["supervised", "pi_model_sg"], [0], ["runs"], True,
                          records)
    assert [(run.method, run.seed) for run in todo] == [("pi_model_sg", 0)]
    runner.execute(todo, records, str(tmp_path / "results.json"))
    text = report.render(records, quick=True)
    row = next(row for row in _table_rows(_section(text, "### 1.1 `clean-1000`"))
               if row[0] == "Π-model, stopped target")
    assert row[3].endswith("(1 seed: no interval)")
    assert row[4] == "no significant difference"


def test_paired_interval_equals_scipy():
    method = {0: 0.83, 1: 0.81, 2: 0.84, 3: 0.82, 4: 0.85}
    supervised = {0: 0.80, 1: 0.80, 2: 0.82, 3: 0.815, 4: 0.81}
    paired = stats.paired_difference(method, supervised)
    differences = np.array([0.03, 0.01, 0.02, 0.005, 0.04])
    low, high = scipy_stats.t.interval(
        0.95, len(differences) - 1, loc=differences.mean(), scale=scipy_stats.sem(differences))
    np.testing.assert_allclose(paired.differences, differences, atol=1e-12)
    np.testing.assert_allclose([paired.mean, paired.low, paired.high],
                               [differences.mean(), low, high], atol=1e-12)
    assert paired.verdict == "wins"


def test_interval_containing_zero_is_no_significant_difference():
    method = {0: 0.83, 1: 0.80, 2: 0.84}
    supervised = {0: 0.81, 1: 0.82, 2: 0.82}
    paired = stats.paired_difference(method, supervised)
    assert paired.low < 0 < paired.high
    assert paired.verdict == "no significant difference"
    losing = stats.paired_difference({0: 0.70, 1: 0.71, 2: 0.69}, supervised)
    assert losing.high < 0 and losing.verdict == "loses"


def test_paired_difference_uses_the_seeds_both_ran_and_rejects_none():
    paired = stats.paired_difference({0: 0.9, 1: 0.8, 7: 0.5}, {0: 0.8, 1: 0.7, 2: 0.1})
    assert paired.seeds == (0, 1)
    with pytest.raises(ValueError, match="No seed in common"):
        stats.paired_difference({0: 0.9}, {1: 0.8})


def test_gap_closed_on_means_and_undefined_without_a_gap():
    assert stats.gap_closed(0.83, 0.80, 0.86) == pytest.approx(0.5)
    assert stats.gap_closed(0.83, 0.80, 0.79) is None


def _fixed_record(method, seed, accuracy, protocol="clean-1000", history=None):
    planned = runner.Planned("run", protocols.PROTOCOLS[protocol], seed, method)
    return {"kind": "run", "protocol": protocol, "method": method, "seed": seed,
            "accuracy": accuracy, "seconds": 60.0, "steps": 5700, "quick": False,
            "commit": "abc", "time": "2026-11-26 08:00 UTC",
            "machine": {"nproc": 2, "cpu": "cpu", "ram": "1 GiB", "tensorflow": "2",
                        "keras": "3", "python": "3"},
            "fingerprint": planned.fingerprint, "config": planned.config,
            **({"history": history} if history else {})}


def test_report_verdicts_follow_the_intervals():
    """Fixed records: the sentences say win / no significant difference as the CI does."""
    record = _fixed_record
    supervised = [0.80, 0.81, 0.79, 0.80, 0.82]
    records = [record("supervised", s, a) for s, a in enumerate(supervised)]
    records += [record("temporal_ensembling", s, a + 0.02) for s, a in enumerate(supervised)]
    records += [record("pi_model", s, a + d) for s, (a, d) in
                enumerate(zip(supervised, (0.02, -0.02, 0.01, -0.01, 0.0)))]
    records += [record("ceiling", s, 0.86) for s in range(5)]
    records.append(record("mean_teacher", 9, 0.9))
    text = report.render(records)
    rows = {row[0]: row for row in _table_rows(_section(text, "### 1.1"))[1:]}
    assert rows["Temporal Ensembling"][4] == "**wins**"
    assert rows["Temporal Ensembling"][5] == f"{100 * 0.02 / (0.86 - 0.804):.0f}%"
    assert rows["Π-model"][4] == "no significant difference"
    assert "Beats supervised-only (the whole 95% interval of the paired difference is above " \
           "0): Temporal Ensembling (+0.0200 [+0.0200, +0.0200])." in text
    assert "No significant difference from supervised-only (the interval contains 0): Π-model" \
           in text
    # A method without a seed in common with supervised-only is not compared.
    assert rows["Mean Teacher"][3:6] == ["no seed in common with supervised-only", "–", "–"]
    assert "| Mean Teacher | – |" in text
    # A record of other settings is left out and counted.
    stale = dict(records[0], accuracy=0.1, fingerprint="old")
    assert "1 older records ran with settings" in report.render(records + [stale])


def test_report_prints_a_none_or_flag_hyper_parameter(monkeypatch):
    """A hyper-parameter left to the model's default (`None`) or a flag is printed as Python
    writes it, numbers in `:g`; `None` used to crash the `:g` format."""
    entry = methods.METHODS["self_training"]
    monkeypatch.setitem(methods.METHODS, "self_training", methods.Method(**{
        **vars(entry),
        "hyper": {"rounds": 3, "threshold": 0.9, "per_class_top_k": None, "balance": True},
    }))
    records = [_fixed_record("supervised", s, a) for s, a in enumerate((0.80, 0.81))]
    records += [_fixed_record("self_training", s, a) for s, a in enumerate((0.82, 0.81))]
    assert records[-1]["config"]["hyper"]["per_class_top_k"] is None
    text = report.render(records)
    assert ("Self-training (3 rounds): balance=True, per_class_top_k=None, rounds=3, "
            "threshold=0.9") in _section(text, "### 1.1")


def test_pseudo_label_figures_are_averaged_per_epoch_and_compared_with_mean_teacher():
    """The per-epoch table is the mean over the seeds that hold the figures (a NaN, no kept
    row, is left out), and FixMatch (`compare_with`) is paired with Mean Teacher seed by
    seed."""
    rng = np.random.default_rng(0)
    names = ("mask_rate", "pseudo_label_mask_rate", "pseudo_label_accuracy",
             "pseudo_label_accuracy_all")
    histories = [{name: rng.uniform(0.3, 0.9, 3).tolist() for name in names} for _ in range(3)]
    histories[1]["pseudo_label_accuracy"][0] = float("nan")
    supervised = [0.80, 0.81, 0.79]
    records = [_fixed_record("supervised", s, a) for s, a in enumerate(supervised)]
    records += [_fixed_record("mean_teacher", s, a + 0.01) for s, a in enumerate(supervised)]
    records += [_fixed_record("fixmatch", s, a + d, history=h) for s, (a, d, h) in
                enumerate(zip(supervised, (0.0, 0.01, 0.005), histories))]
    text = report.render(records)
    section = _section(text, "#### FixMatch")
    table = {row[0]: row[1:] for row in _table_rows(section)[1:]}
    for epoch in range(3):
        for column, name in enumerate(names):
            values = [h[name][epoch] for h in histories if not np.isnan(h[name][epoch])]
            assert table[str(epoch + 1)][column] == f"{np.mean(values):.3f}"
    differences = np.array([0.0, 0.01, 0.005]) - 0.01
    half = scipy_stats.t.ppf(0.975, 2) * differences.std(ddof=1) / np.sqrt(3)
    assert (f"- FixMatch − Mean Teacher, paired over seeds 0, 1, 2: {differences.mean():+.4f} "
            f"[{differences.mean() - half:+.4f}, {differences.mean() + half:+.4f}], "
            "no significant difference.") in text


def test_plan_estimates_cost_from_measured_runs():
    protocol = protocols.PROTOCOLS["clean-1000"]
    run = runner.Planned("run", protocol, 0, "mean_teacher")
    planned_cost = runner.estimate_seconds(run, [])
    expected = runner.RUN_OVERHEAD_SECONDS + (
        protocols.BACKBONES["mlp"].seconds_per_step * 5700 * methods.METHODS["mean_teacher"].cost)
    assert planned_cost == pytest.approx(expected)
    measured = [{"kind": "run", "protocol": "clean-1000", "method": "mean_teacher",
                 "seconds": s, "quick": False} for s in (50.0, 70.0, 60.0)]
    assert runner.estimate_seconds(run, measured) == 60.0


def test_default_run_is_planned_within_90_minutes():
    _, todo = runner.plan(protocols.DEFAULT_PROTOCOLS, methods.default_methods(),
                          report.DEFAULT_SEEDS, benchmark.SECTIONS, False, [])
    assert len([run for run in todo if run.method == "ceiling"]) == 5
    assert sum(runner.estimate_seconds(run, []) for run in todo) < 90 * 60


def test_quick_needs_an_output():
    with pytest.raises(SystemExit, match="--quick needs --output"):
        benchmark.main(["--quick"])


def test_preset_dry_run_prints_the_papers_settings(capsys):
    benchmark.main(["--preset", "cifar10-4000", "--dry-run"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["epochs"] == 300
    assert printed["batch_size"] == 100
    assert printed["learning_rate"] == 0.003
    assert printed["num_labeled"] == 4000
    assert printed["horizontal_flip"] is True
    assert printed["max_unsupervised_weight"]["temporal_ensembling"] == 30.0


def test_preset_needs_data_dir():
    with pytest.raises(ValueError, match="data_dir=None"):
        benchmark.run_preset("svhn-500", data_dir=None)


def test_noise_protocols_load_their_rate_of_wrong_labels():
    clean = protocols.load(protocols.PROTOCOLS["clean-1000"].quick(), seed=3)
    noisy = protocols.load(protocols.PROTOCOLS["noise20"].quick(), seed=3)
    labeled = clean["y_semi"] != -1
    np.testing.assert_array_equal(noisy["y_semi"] != -1, labeled)
    assert np.sum(noisy["y_semi"][labeled] != clean["y"][labeled]) == 10
    np.testing.assert_array_equal(clean["y_semi"][labeled], clean["y"][labeled])


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="Received: 'nope'"):
        runner.plan(["nope"], ["supervised"], [0], ["runs"], False, [])
    with pytest.raises(ValueError, match="Received: 'no_such_method'"):
        runner.plan(["clean-1000"], ["no_such_method"], [0], ["runs"], False, [])


REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_from_json_regenerates_the_committed_report_byte_for_byte(tmp_path, monkeypatch):
    """`python estimators/benchmark.py --from-json benchmarks/results.json`, run at the root
    of the repository, rewrites BENCHMARKS.md with exactly its committed bytes."""
    with open(os.path.join(REPOSITORY, "BENCHMARKS.md"), "rb") as f:
        committed = f.read()
    # The same command on a copy of the tree's records, so that the committed files stay.
    (tmp_path / "benchmarks").mkdir()
    for name in ("results.json", "sweep.json", "speed.json"):
        with open(os.path.join(REPOSITORY, "benchmarks", name), "rb") as f:
            (tmp_path / "benchmarks" / name).write_bytes(f.read())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(benchmark.plots, "plot_all", lambda *args, **kwargs: None)
    benchmark.main(["--from-json", "benchmarks/results.json"])
    assert (tmp_path / "BENCHMARKS.md").read_bytes() == committed
