"""Benchmarks of the tfssl methods: runs what is missing, then writes BENCHMARKS.md and plots.

Every method of `benchmarking/methods.py` trains under every protocol of
`benchmarking/protocols.py` (by default: 1000 clean labels, and 20% and 50% of them
wrong) with seeds 0-4; each is compared with supervised-only seed by seed (95% interval of
the paired difference). Also: the seed's TF1 Temporal Ensembling graph next to the Keras
port, the step time of each method relative to supervised, the published numbers, and
`--preset`s that rerun the papers' settings on a GPU with CIFAR-10 / SVHN.

Finished runs are kept in `benchmarks/results.json` and skipped next time: a run cut short
resumes, and `--methods`, `--protocols` or `--seeds` extend it. The planned runs and their
estimated cost are printed before anything trains (`--dry-run`: only that).

Example:
    python estimators/benchmark.py --dry-run                  # the plan and its cost
    python estimators/benchmark.py                            # everything missing
    python estimators/benchmark.py --protocols noise20 --methods mean_teacher --seeds 5 6
    python estimators/benchmark.py --quick --output quick/B.md # seconds; numbers mean nothing
    python estimators/benchmark.py --from-json benchmarks/results.json   # re-render only
    python estimators/benchmark.py --preset cifar10-4000 --dry-run
    python estimators/benchmark.py --protocols clean-1000 --methods adversarial \
        --seeds 0 1 2 --sections runs robustness              # accuracy under FGM attacks
"""

import argparse
import json
import os

from benchmarking import plots, report, runner
from benchmarking.methods import METHODS, default_methods
from benchmarking.presets import PRESETS, run_preset
from benchmarking.protocols import DEFAULT_PROTOCOLS, PROTOCOLS

__all__ = ["build_parser", "main"]

SECTIONS = ("runs", "tf1", "speed", "robustness")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--protocols", nargs="+", choices=sorted(PROTOCOLS),
                        default=list(DEFAULT_PROTOCOLS), metavar="NAME",
                        help=f"protocols to run, of {sorted(PROTOCOLS)} "
                        f"(default: {' '.join(DEFAULT_PROTOCOLS)})")
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), metavar="NAME",
                        help=f"methods to run, of {sorted(METHODS)} (default: all but the "
                        f"ceiling, which runs with every protocol that has one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(report.DEFAULT_SEEDS))
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="what to measure: the method runs, the TF1 comparison, speed, "
                        "robustness (supervised-only and adversarial training under FGM "
                        "attacks on clean-1000, planned with --methods adversarial or --quick)")
    parser.add_argument("--quick", action="store_true",
                        help="a tiny budget that exercises every section in seconds "
                        "(needs --output: its numbers mean nothing)")
    parser.add_argument("--output", help="the Markdown report (default: BENCHMARKS.md)")
    parser.add_argument("--plots-dir",
                        help="the PNGs, results.json and sweep.json (default: benchmarks/ "
                        "beside --output)")
    parser.add_argument("--data-dir", help="Fashion-MNIST files, or the preset's dataset")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the planned runs and their cost (with --preset: its "
                        "configuration) and stop")
    parser.add_argument("--from-json", metavar="PATH",
                        help="only re-render the report and plots from a results.json")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="rerun a paper setting (GPU and data needed) instead")
    return parser


def _print_plan(planned, todo, records):
    # A robustness run that also writes its "run" record stands for two planned runs.
    merged = sum(run.also_run for run in todo)
    print(f"{len(planned)} planned runs, {len(planned) - len(todo) - merged} already in "
          f"results.json, {len(todo) + merged} to run ({len(todo)} trainings):")
    total = 0.0
    for run in todo:
        seconds = runner.estimate_seconds(run, records)
        total += seconds
        print(f"  {run.describe()}  ~{seconds:.0f} s")
    print(f"estimated cost: {total / 60:.1f} min on this machine (2 idle cores; measured "
          f"runs in results.json where there are some)", flush=True)
    return total


def _read_json(path):
    """The JSON file at `path`, or `None` when there is none."""
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _write_report(records, output, plots_dir, quick):
    sweep = _read_json(os.path.join(plots_dir, "sweep.json"))
    # benchmarks/step_cost.py's record; a --quick report leaves it out.
    step_costs = None if quick else _read_json(os.path.join(plots_dir, "speed.json"))
    plots.plot_all(records, sweep, plots_dir, quick=quick)
    link = os.path.relpath(plots_dir, os.path.dirname(output))
    with open(output, "w", encoding="utf-8") as f:
        f.write(report.render(records, sweep, plots=link, quick=quick, step_costs=step_costs))
    print(f"wrote {output} and {plots_dir}/*.png", flush=True)


def main(argv=None):
    """Runs the benchmark (or a preset) with the command-line flags `argv`.

    Returns:
        With `--preset`, its configuration; else a dict with the `records` of results.json,
        the `planned` runs, those still `todo` before this call, and the `estimate` (s).
    """
    args = build_parser().parse_args(argv)
    if args.preset:
        return run_preset(args.preset, args.data_dir, seed=args.seeds[0], dry_run=args.dry_run)
    if args.quick and not args.output and not args.from_json:
        raise SystemExit("--quick needs --output: its report must not replace BENCHMARKS.md")
    output = os.path.abspath(args.output or "BENCHMARKS.md")
    plots_dir = os.path.abspath(args.plots_dir or os.path.join(os.path.dirname(output),
                                                                "benchmarks"))
    results_path = os.path.join(plots_dir, "results.json")
    if args.from_json:
        records = runner.load_records(args.from_json)
        quick = bool(records) and all(record.get("quick") for record in records)
        _write_report(records, output, plots_dir, quick)
        return {"records": records}

    records = runner.load_records(results_path)
    methods = args.methods or list(default_methods())
    planned, todo = runner.plan(args.protocols, methods, args.seeds, args.sections,
                                args.quick, records)
    estimate = _print_plan(planned, todo, records)
    result = {"records": records, "planned": planned, "todo": todo, "estimate": estimate}
    if args.dry_run:
        return result
    try:
        runner.execute(todo, records, results_path, args.data_dir)
    finally:
        # Also after an interrupt: the report shows what was measured.
        _write_report(records, output, plots_dir, args.quick)
    return result


if __name__ == "__main__":
    main()
