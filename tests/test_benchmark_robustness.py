"""Tests of the benchmark's robustness section: the FGM attack, its records, table and plot."""

import json
import os
import sys

import keras
import numpy as np
import pytest
from scipy import stats as scipy_stats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "estimators"))

import benchmark  # noqa: E402
from benchmarking import methods, protocols, report, robustness, runner  # noqa: E402
from tfssl import models, testing  # noqa: E402

QUICK_ARGV = ["--quick", "--protocols", "clean-1000", "--methods", "adversarial", "--seeds",
              "0", "--sections", "robustness"]
MACHINE = {"nproc": 2, "cpu": "cpu", "ram": "1 GiB", "tensorflow": "2", "keras": "3",
           "python": "3"}


def _section(text, heading):
    start = text.index(heading)
    end = text.find("\n## ", start + 1)
    return text[start:] if end < 0 else text[start:end]


def _table_rows(section):
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")]


def _linear_backbone(weights, bias):
    backbone = keras.Sequential([keras.Input((weights.shape[0],)),
                                 keras.layers.Dense(weights.shape[1])])
    backbone.set_weights([weights, bias])
    return backbone


def test_attack_at_epsilon_zero_is_the_clean_accuracy():
    x, y, _ = testing.tiny_data(num_samples=64)
    backbone = testing.tiny_backbone()
    clean = float(np.mean(np.argmax(backbone.predict(x, verbose=0), -1) == y))
    accuracies = robustness.attacked_accuracies(backbone, x, y, [0.0, 0.5], batch_size=10)
    assert accuracies[0] == clean
    assert len(accuracies) == 2


def test_fgm_accuracy_equals_the_linear_softmax_formula():
    """logits = xW + b: the input gradient of the cross-entropy is (softmax - onehot) W^T."""
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(4, 3)).astype("float32")
    bias = rng.normal(size=3).astype("float32")
    x = rng.normal(size=(40, 4)).astype("float32")
    y = rng.integers(0, 3, size=40)
    epsilons = [0.0, 0.3, 1.0, 3.0]
    accuracies = robustness.attacked_accuracies(_linear_backbone(weights, bias), x, y,
                                                epsilons, batch_size=16)
    logits = x @ weights + bias
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = (p - np.eye(3)[y]) @ weights.T
    direction = g / np.linalg.norm(g, axis=1, keepdims=True)
    expected = [np.mean(np.argmax((x + e * direction) @ weights + bias, 1) == y)
                for e in epsilons]
    np.testing.assert_allclose(accuracies, expected)
    # The attack must hurt this model over the range, else the check above says little.
    assert accuracies[-1] < accuracies[0]


def test_negative_attack_radius_is_refused():
    x, y, _ = testing.tiny_data()
    with pytest.raises(ValueError, match="epsilon=-1"):
        robustness.attacked_accuracies(testing.tiny_backbone(), x, y, [0.0, -1])


def test_adversarial_entry_trains_adversarial_training_on_supervised_batches():
    protocol = protocols.PROTOCOLS["clean-1000"].quick()
    rows = protocols.load(protocol, seed=0)
    seen = {}

    def evaluate(model, x, y):
        seen.update(type=type(model), epsilon=model.epsilon, method=model.method)
        return {}

    entry = methods.METHODS["adversarial"]
    result = runner.fit_and_evaluate(entry, {"epsilon": 0.7}, protocol, rows, 0,
                                     protocols.BACKBONES[protocol.backbone].build,
                                     evaluate=evaluate)
    assert seen == {"type": models.AdversarialTraining, "epsilon": 0.7, "method": "fgm"}
    assert entry.data == "labeled" and entry.default is False
    assert result["steps"] == protocol.steps


def _fake_record(kind, method, seed, attacked, epsilons=(0.0, 1.0, 2.0), fingerprint=None):
    planned = runner.Planned(kind, protocols.PROTOCOLS["clean-1000"], seed, method)
    return {"kind": kind, "protocol": "clean-1000", "method": method, "seed": seed,
            "accuracy": attacked[0], "epsilons": list(epsilons),
            "attacked_accuracy": list(attacked), "steps": 5700, "seconds": 60.0,
            "quick": False, "commit": "abc", "time": "2026-11-26 10:00 UTC",
            "machine": MACHINE, "fingerprint": fingerprint or planned.fingerprint,
            "config": planned.config}


def test_table_from_fake_records_has_means_and_paired_intervals():
    supervised = {0: [0.80, 0.40, 0.20], 1: [0.82, 0.44, 0.18], 2: [0.78, 0.42, 0.22]}
    adversarial = {0: [0.81, 0.60, 0.30], 1: [0.80, 0.66, 0.36], 2: [0.79, 0.62, 0.31]}
    records = [_fake_record("robustness", "supervised", s, a) for s, a in supervised.items()]
    records += [_fake_record("robustness", "adversarial", s, a) for s, a in adversarial.items()]
    # Another setting's record and a run record are not part of the table.
    records.append(_fake_record("robustness", "adversarial", 0, [0.1, 0.1, 0.1],
                                fingerprint="old"))
    records.append(_fake_record("run", "adversarial", 0, [0.5]))
    text = report.render(records)
    section = _section(text, "## 6. Robustness")
    rows = _table_rows(section)
    assert rows[0][:3] == ["ε (L2, per image)", "Supervised only, mean ± std",
                           "Adversarial training (FGM), mean ± std"]
    assert [row[0] for row in rows[1:]] == ["0", "1", "2"]
    for position, row in enumerate(rows[1:]):
        ours = np.array([adversarial[s][position] for s in range(3)])
        theirs = np.array([supervised[s][position] for s in range(3)])
        assert row[1] == f"{theirs.mean():.4f} ± {theirs.std(ddof=1):.4f}"
        assert row[2] == f"{ours.mean():.4f} ± {ours.std(ddof=1):.4f}"
        d = ours - theirs
        half = scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
        assert row[3] == (f"{d.mean():+.4f} [{d.mean() - half:+.4f}, "
                          f"{d.mean() + half:+.4f}]")
    assert rows[1][4] == "no significant difference"
    assert rows[2][4] == "**wins**"
    assert "--methods adversarial --seeds 0 1 2 --sections runs robustness" in section
    assert "![clean-1000: accuracy under FGM attacks](benchmarks/robustness.png)" in section


def test_robustness_runs_are_planned_and_share_the_training_of_their_run():
    protocol = protocols.PROTOCOLS["clean-1000"]
    supervised_run = _fake_record("run", "supervised", 0, [0.8])
    planned, todo = runner.plan(["clean-1000"], ["supervised", "adversarial"], [0],
                                ("runs", "robustness"), False, [supervised_run])
    kinds = sorted((run.kind, run.method, run.also_run) for run in todo)
    assert ("robustness", "supervised", False) in kinds
    assert ("robustness", "adversarial", True) in kinds
    assert ("run", "adversarial", False) not in kinds
    # Without adversarial training in --methods there is nothing to compare.
    _, todo = runner.plan(["clean-1000"], ["supervised"], [0], ("robustness",), False, [])
    assert todo == []
    robust = runner.Planned("robustness", protocol, 0, "adversarial")
    trained = runner.Planned("run", protocol, 0, "adversarial")
    assert robust.fingerprint != trained.fingerprint
    assert runner.estimate_seconds(robust, []) == pytest.approx(
        runner.estimate_seconds(trained, []) + robustness.ATTACK_SECONDS)


def test_one_training_writes_the_run_and_the_robustness_records(tmp_path, monkeypatch):
    protocol = protocols.PROTOCOLS["clean-1000"].quick()
    monkeypatch.setattr(runner, "robustness_run", lambda *args: {
        "accuracy": 0.7, "steps": 3, "epsilons": [0.0, 1.0], "attacked_accuracy": [0.7, 0.2],
        "attack_seconds": 0.0, "attack_cpu_seconds": 0.0, "history": {"loss": [1.0]}})
    run = runner.Planned("robustness", protocol, 4, "adversarial", quick=True, also_run=True)
    records = runner.execute([run], [], str(tmp_path / "results.json"))
    assert [r["kind"] for r in records] == ["run", "robustness"]
    assert records[0]["fingerprint"] == runner.Planned(
        "run", protocol, 4, "adversarial", quick=True).fingerprint
    assert records[0]["accuracy"] == records[1]["accuracy"] == 0.7
    assert records[0]["history"] == {"loss": [1.0]}
    assert json.loads((tmp_path / "results.json").read_text()) == records


def test_validation_rows_are_training_rows_outside_the_protocol():
    protocol = protocols.PROTOCOLS["clean-1000"]
    rows = robustness.validation_rows(protocol, seed=0)
    (x, y), (x_test, _) = protocols._fashion(None)
    np.testing.assert_array_equal(rows["x_test"], x[-robustness.VALIDATION_ROWS:])
    np.testing.assert_array_equal(rows["y_test"], y[-robustness.VALIDATION_ROWS:])
    assert protocol.train_size + robustness.VALIDATION_ROWS <= len(x)
    assert len(rows["x_test"]) != len(x_test)


@pytest.mark.slow  # benchmark.py --quick end to end
def test_quick_run_renders_the_section_resumes_and_rerenders(tmp_path):
    output = tmp_path / "B.md"
    result = benchmark.main([*QUICK_ARGV, "--output", str(output)])
    records = result["records"]
    assert sorted(r["method"] for r in records) == ["adversarial", "supervised"]
    for record in records:
        assert record["kind"] == "robustness" and record["quick"] is True
        assert record["epsilons"] == list(robustness.SETTINGS_QUICK["epsilons"])
        assert record["attacked_accuracy"][0] == record["accuracy"]
        assert all(0.0 <= a <= 1.0 for a in record["attacked_accuracy"])
    text = output.read_text()
    section = _section(text, "## 6. Robustness")
    rows = _table_rows(section)
    assert [row[0] for row in rows[1:]] == ["0", "1", "3"]
    assert rows[1][1] == f"{records[0]['accuracy']:.4f} ± 0.0000"
    assert (tmp_path / "benchmarks" / "robustness.png").stat().st_size > 0
    # Resumes: nothing left to do; re-renders the same section from results.json alone.
    assert benchmark.main([*QUICK_ARGV, "--output", str(output), "--dry-run"])["todo"] == []
    again = tmp_path / "again.md"
    benchmark.main(["--from-json", str(tmp_path / "benchmarks" / "results.json"),
                    "--output", str(again), "--plots-dir", str(tmp_path / "benchmarks")])
    assert _section(again.read_text(), "## 6. Robustness") == section
