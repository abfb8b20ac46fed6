"""The experiment harness behind `estimators/`: one concern per module, imported in one
direction (`protocols` <- `training` <- `methods` <- `robustness`, `presets` <- `runner` <-
`report`; `tests/test_scripts.py` checks that no module imports another in a circle).

- `protocols.py`: the registry of protocols (data, labels, label noise, backbone, budget,
  batches) and the one Fashion-MNIST loader, `load_rows`.
- `training.py`: one registry entry trained on one protocol's rows (`fit_model`,
  `fit_and_evaluate`), shared by the benchmark, the sweep, the robustness records, the presets.
- `methods.py`: the registry of methods (constructor, hyper-parameters, batch layout); its
  docstring says how to add one.
- `runner.py`: plans the benchmark's runs, estimates their cost, runs them, keeps
  `results.json`.
- `stats.py`: seed spread, paired 95% intervals against supervised-only, gap closed.
- `report.py` and `plots.py`: BENCHMARKS.md and its PNGs, from the records only.
- `robustness.py`: accuracy under FGM attacks, and the choice of adversarial training's
  epsilon.
- `presets.py`: the papers' settings (`--preset`), published numbers, citations.
"""
