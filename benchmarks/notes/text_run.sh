#!/bin/bash
# Text benchmark: review corpus, 200 labels, fasttext, same budget for every method.
cd /work/wt/text
COMMON="--train-size 4000 --test-size 2000 --epochs 4 --ramp-up-epochs 2 --num-buckets 16384 --embedding-dim 32 --batch-size 128 --labeled-per-batch 32 --max-unsupervised-weight 10 --verbose 2"
for seed in 0 1; do
  for method in supervised pi te mt; do
    start=$(date +%s)
    PYTHONPATH=$PWD nice -n 5 /work/main/.venv/bin/python estimators/text_classification.py --method $method --labels 200 --seed $seed $COMMON 2>&1 | grep "test accuracy\|Epoch\|step -" | sed "s/^/[$method seed=$seed] /"
    echo "[$method seed=$seed] seconds $(( $(date +%s) - start ))"
  done
  start=$(date +%s)
  PYTHONPATH=$PWD nice -n 5 /work/main/.venv/bin/python estimators/text_classification.py --method supervised --labels -1 --seed $seed $COMMON 2>&1 | grep "test accuracy\|step -" | sed "s/^/[ceiling seed=$seed] /"
  echo "[ceiling seed=$seed] seconds $(( $(date +%s) - start ))"
done
