#!/bin/bash
# e22 / e23: e18's DPO-safety pairs rendered to plain strings plus plain letter pairs (replay of the letter phase: 20% / 40% of the pairs used); from rd13's DPO-general model; validation measurements only.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e2223.times
for e in e22 e23; do
  ( s=$(date +%s); OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/aloe train dpo /work/runs/$e/dpo.yaml > /work/runs/$e/train.log 2>&1
    echo "$e train rc=$? seconds=$(( $(date +%s) - s ))" >> $T ) &
done
wait
s=$(date +%s)
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure e22=/work/runs/e22/dpo/safety/model e23=/work/runs/e23/dpo/safety/model \
  > /work/runs/e2223.measure.jsonl 2> /work/runs/e2223.measure.err
echo "measure rc=$? seconds=$(( $(date +%s) - s ))" >> $T
s=$(date +%s)
.venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters --generative 6 \
  e22=/work/runs/e22/dpo/safety/model e23=/work/runs/e23/dpo/safety/model \
  > /work/runs/e2223.gen.jsonl 2> /work/runs/e2223.gen.err
echo "gen rc=$? seconds=$(( $(date +%s) - s ))" >> $T
for name in e22 e23; do
  s=$(date +%s)
  .venv/bin/aloe safety --model /work/runs/$name/dpo/safety/model --suites file:/work/runs/val/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/val/safety-$name > /work/runs/val/safety-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> $T
done
echo done >> $T
