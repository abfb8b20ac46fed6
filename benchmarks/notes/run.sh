#!/bin/sh
# Runs one measurement command from the worktree, logging it and its JSON records.
# Usage: benchmarks/notes/run.sh ARGS...   (the arguments of estimators/measure.py)
cd "$(dirname "$0")/../.." || exit 1
echo "$(date -u +%FT%TZ) estimators/measure.py $*" >> benchmarks/notes/commands.log
PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=2 /work/main/.venv/bin/python estimators/measure.py \
    --output benchmarks/notes/runs.jsonl "$@"
