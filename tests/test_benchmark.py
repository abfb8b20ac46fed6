"""Tests of estimators/benchmark.py: the --quick report, the presets and the label noise."""

import json
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "estimators"))

import benchmark  # noqa: E402

SECTIONS = (
    "## 1. Accuracy",
    "## 2. The seed's TF1 graph next to the Keras port",
    "## 3. Label noise",
    "## 4. Speed",
    "## 5. Published numbers",
)
PLOTS = ("accuracy.png", "curves.png", "label_noise.png", "speed.png")


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
    return rows[1:] if rows else rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    output = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    argv = ["--quick", "--seeds", "0", "--output", str(output)]
    state = benchmark.main(argv)
    return output, state


def test_quick_report_has_every_section_command_and_plots(quick_run):
    output, _ = quick_run
    text = output.read_text(encoding="utf-8")
    for heading in SECTIONS:
        assert heading in text
    assert "Not run" not in text
    # Every measured section states the exact command and the machine.
    command = f"python estimators/benchmark.py --quick --seeds 0 --output {output}"
    assert text.count(f"Command: `{command}`") == 4
    assert text.count("Machine: ") == 4
    for name in PLOTS:
        path = output.parent / "benchmarks" / name
        assert path.stat().st_size > 1000
        assert f"](benchmarks/{name})" in text


def test_quick_report_accuracies_parse_in_unit_interval(quick_run):
    output, state = quick_run
    text = output.read_text(encoding="utf-8")
    accuracy_rows = _table_rows(_section(text, SECTIONS[0]))
    # Four methods and the ceiling.
    assert len(accuracy_rows) == 5
    for row in accuracy_rows:
        value = float(row[1].split("±")[0])
        assert 0.0 <= value <= 1.0
    # The table shows the measured values, not something else.
    measured = state["results"]["accuracy"]["temporal_ensembling"][0]["accuracy"]
    assert f"{measured:.4f}" in accuracy_rows[2][1]
    tf1_rows = _table_rows(_section(text, SECTIONS[1]))
    assert [row[0] for row in tf1_rows] == [
        "TF1 graph (seed 000's step)", "Keras `TemporalEnsembling`"]
    for row in tf1_rows:
        assert 0.0 <= float(row[1]) <= 1.0
        assert float(row[2]) > 0.0
    noise_rows = _table_rows(_section(text, SECTIONS[2]))
    assert [row[0] for row in noise_rows] == ["0%", "20%", "50%"]
    for row in noise_rows:
        assert 0.0 <= float(row[1]) <= 1.0 and 0.0 <= float(row[2]) <= 1.0
    speed_rows = _table_rows(_section(text, SECTIONS[3]))
    assert speed_rows[0][0] == "Supervised only" and float(speed_rows[0][2]) == 1.0
    assert all(float(row[1]) > 0.0 for row in speed_rows)


def test_from_json_rerenders_the_same_report(quick_run, tmp_path):
    output, _ = quick_run
    again = tmp_path / "BENCHMARKS.md"
    benchmark.main([
        "--from-json", str(output.parent / "benchmarks" / "results.json"),
        "--output", str(again),
    ])
    assert again.read_text(encoding="utf-8") == output.read_text(encoding="utf-8")


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


def test_noisy_labels_corrupts_exactly_the_rate_of_labeled_rows():
    rng = np.random.default_rng(3)
    y_semi = np.full(500, -1)
    y_semi[rng.choice(500, 200, replace=False)] = rng.integers(0, 10, 200)
    noisy = benchmark.noisy_labels(y_semi, 0.2, seed=0)
    changed = noisy != y_semi
    assert changed.sum() == 40
    # Only labeled rows change, each to a different valid class.
    assert np.all(y_semi[changed] != -1)
    assert np.all((noisy[changed] >= 0) & (noisy[changed] < 10))
    np.testing.assert_array_equal(noisy[y_semi == -1], -1)
    np.testing.assert_array_equal(benchmark.noisy_labels(y_semi, 0.2, seed=0), noisy)


def test_noisy_labels_rejects_bad_rate():
    with pytest.raises(ValueError, match="rate=1.5"):
        benchmark.noisy_labels(np.zeros(10, int), 1.5, seed=0)


def test_seed_verdict_names_the_seed_a_method_loses_on():
    def runs(*values):
        return {seed: {"accuracy": value} for seed, value in enumerate(values)}

    acc = {
        "supervised": runs(0.80, 0.81),
        "pi_model": runs(0.82, 0.83),
        "temporal_ensembling": runs(0.82, 0.80),
        "mean_teacher": runs(0.80, 0.79),
    }
    text = benchmark._seed_verdict(acc, [0, 1])
    assert ("Π-model beats supervised-only on every seed: +0.0200 (seed 0), "
            "+0.0200 (seed 1).") in text
    assert ("Temporal Ensembling does **not** beat supervised-only on seed 1: +0.0200 (seed 0), "
            "-0.0100 (seed 1).") in text
    # A tie is not a win.
    assert "Mean Teacher does **not** beat supervised-only on seed 0, 1:" in text


def test_quick_run_semi_supervised_models_have_no_seed_factor(quick_run):
    _, state = quick_run
    assert state["cfg"]["seed_factor"] is False
    model = benchmark._build_semi_supervised(
        "temporal_ensembling", benchmark._mlp_backbone(state["cfg"])(), 150, state["cfg"],
        benchmark._fashion_hyper(state["cfg"]),
    )
    assert model.num_labeled is None
    assert "`num_labeled=None`" in benchmark._protocol(state["cfg"], [0])
