#!/bin/bash
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e24.times
M=/work/runs/e24/dpo/safety/model
s=$(date +%s)
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding --measure e24=$M > /work/runs/e24.measure.jsonl 2> /work/runs/e24.measure.err
echo "measure rc=$? seconds=$(( $(date +%s) - s ))" >> $T
s=$(date +%s)
.venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters --generative 6 e24=$M rd14_final=/work/runs/rd14/dpo/train/safety/model > /work/runs/e24.gen.jsonl 2> /work/runs/e24.gen.err
echo "gen rc=$? seconds=$(( $(date +%s) - s ))" >> $T
for pair in e24=$M rd14_final=/work/runs/rd14/dpo/train/safety/model; do
  name=${pair%%=*}; model=${pair#*=}; s=$(date +%s)
  .venv/bin/aloe safety --model $model --suites file:/work/runs/val/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/val/safety-$name > /work/runs/val/safety-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> $T
done
echo measured >> $T
