#!/bin/bash
# e14 (DPO safety without the answer-format pairs) and e15 (DPO safety plus 400 letter-balanced answer pairs, 110
# steps so the safety pairs are seen as often as in 80 steps without them), both from rd12's DPO-general model,
# side by side at one thread each; then validation letters and validation safety.
cd /work/main
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e1415.times
for e in e14 e15; do
  ( s=$(date +%s); .venv/bin/aloe train dpo /work/runs/$e/dpo.yaml > /work/runs/$e/train.log 2>&1
    echo "$e train rc=$? seconds=$(( $(date +%s) - s ))" >> $T ) &
done
wait
( s=$(date +%s); .venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters \
    rd12_general=/work/runs/rd12/dpo/train/general/model rd12_final=/work/runs/rd12/dpo/train/safety/model \
    e14=/work/runs/e14/dpo/safety/model e15=/work/runs/e15/dpo/safety/model > /work/runs/e1415.letters 2> /work/runs/e1415.letters.err
  echo "letters rc=$? seconds=$(( $(date +%s) - s ))" >> $T ) &
for pair in "rd12final:/work/runs/rd12/dpo/train/safety/model" "e14:/work/runs/e14/dpo/safety/model" "e15:/work/runs/e15/dpo/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  s=$(date +%s)
  .venv/bin/aloe safety --model $model --suites file:/work/runs/e14/suite-val.jsonl --styles plain \
    --backend llamacpp --threads 1 --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/e1415/val-$name > /work/runs/e1415.val-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> $T
done
wait
echo done >> $T
