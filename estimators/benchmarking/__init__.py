"""The benchmark behind `estimators/benchmark.py` and BENCHMARKS.md, one concern per module.

- `protocols.py`: the settings (data, labels, label noise, backbone, budget, batches).
- `methods.py`: one entry per method (label, `build`, hyper-parameters per protocol); its
  docstring says how to add one.
- `runner.py`: plans the runs, estimates their cost, trains them, keeps `results.json`.
- `stats.py`: seed spread, paired 95% intervals against supervised-only, gap closed.
- `report.py` and `plots.py`: BENCHMARKS.md and its PNGs, from the records only.
- `presets.py`: the papers' settings (`--preset`), published numbers, citations.
"""
