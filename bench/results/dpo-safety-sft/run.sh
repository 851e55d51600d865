#!/bin/bash
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
s=$(date +%s)
nice -n 19 .venv/bin/aloe train dpo /work/runs/e13/dpo.yaml > /work/runs/e13/train.log 2>&1
echo "train rc=$? seconds=$(( $(date +%s) - s ))" > /work/runs/e13/times
for pair in "base:smollm2-135m-instruct" "rd10final:/work/runs/rd10/dpo/train/safety/model" "e13:/work/runs/e13/dpo/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  nice -n 19 .venv/bin/aloe safety --model $model --suites file:/work/runs/e13/suite-val.jsonl --styles plain \
    --backend llamacpp --threads 1 --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/e13/val-$name > /work/runs/e13/val-$name.log 2>&1
  echo "$name rc=$?" >> /work/runs/e13/times
done
echo done >> /work/runs/e13/times
