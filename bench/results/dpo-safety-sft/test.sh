#!/bin/bash
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
s=$(date +%s)
nice -n 5 .venv/bin/aloe safety --model /work/runs/e13/dpo/safety/model --suites file:/work/runs/rd10/data/holdout/advbench-eval.jsonl,xstest \
  --data-dir ../shared/data --styles plain,role_play,refusal_suppression --backend llamacpp --threads 1 --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 1000 \
  --out /work/runs/e13/test-e13 > /work/runs/e13/test-e13.log 2>&1
echo "test rc=$? seconds=$(( $(date +%s) - s ))" >> /work/runs/e13/times
