#!/bin/bash
# e18: rd13's DPO safety with the answer-format pairs' chosen side "Answer: <key>" (no option text);
# e19: rd13's DPO safety without the answer-format pairs. Both from rd13's DPO-general model, side by side at one
# thread each; then validation letters (binding probe), generated answers and validation safety prompts.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e1819.times
for e in e18 e19; do
  ( s=$(date +%s); OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/aloe train dpo /work/runs/$e/dpo.yaml > /work/runs/$e/train.log 2>&1
    echo "$e train rc=$? seconds=$(( $(date +%s) - s ))" >> $T ) &
done
wait
s=$(date +%s)
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure rd13_final=/work/runs/rd13/dpo/train/safety/model e18=/work/runs/e18/dpo/safety/model e19=/work/runs/e19/dpo/safety/model \
  > /work/runs/e1819.measure.jsonl 2> /work/runs/e1819.measure.err
echo "measure rc=$? seconds=$(( $(date +%s) - s ))" >> $T
s=$(date +%s)
.venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters --generative 6 \
  rd13_final=/work/runs/rd13/dpo/train/safety/model e18=/work/runs/e18/dpo/safety/model e19=/work/runs/e19/dpo/safety/model \
  > /work/runs/e1819.gen.jsonl 2> /work/runs/e1819.gen.err
echo "gen rc=$? seconds=$(( $(date +%s) - s ))" >> $T
for pair in "rd13_final:/work/runs/rd13/dpo/train/safety/model" "e18:/work/runs/e18/dpo/safety/model" "e19:/work/runs/e19/dpo/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  s=$(date +%s)
  .venv/bin/aloe safety --model $model --suites file:/work/runs/val/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/val/safety-$name > /work/runs/val/safety-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> $T
done
echo done >> $T
