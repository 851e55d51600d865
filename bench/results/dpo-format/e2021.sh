#!/bin/bash
# e20: rd13's DPO safety with the answer-format pairs at 4 rotations (each question's four copies in one step: every
# letter chosen equally often in every step) and no option text; e21: the same with the rejected reply cut to
# "The question asks:" (3 words: no question word such as "A" on the rejected side). From rd13's DPO-general
# model; validation measurements only.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e2021.times
for e in e20 e21; do
  ( s=$(date +%s); OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/aloe data prefs /work/runs/$e/prefs.yaml --out /work/runs/$e/prefs_safety > /work/runs/$e/prefs.log 2>&1
    echo "$e prefs rc=$? seconds=$(( $(date +%s) - s ))" >> $T
    s=$(date +%s); OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/aloe train dpo /work/runs/$e/dpo.yaml > /work/runs/$e/train.log 2>&1
    echo "$e train rc=$? seconds=$(( $(date +%s) - s ))" >> $T ) &
done
wait
s=$(date +%s)
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure e20=/work/runs/e20/dpo/safety/model e21=/work/runs/e21/dpo/safety/model \
  > /work/runs/e2021.measure.jsonl 2> /work/runs/e2021.measure.err
echo "measure rc=$? seconds=$(( $(date +%s) - s ))" >> $T
s=$(date +%s)
.venv/bin/python bench/val_letters.py --data-dir ../shared/data --work /tmp/val-letters --generative 6 \
  e20=/work/runs/e20/dpo/safety/model e21=/work/runs/e21/dpo/safety/model \
  > /work/runs/e2021.gen.jsonl 2> /work/runs/e2021.gen.err
echo "gen rc=$? seconds=$(( $(date +%s) - s ))" >> $T
for name in e20 e21; do
  s=$(date +%s)
  .venv/bin/aloe safety --model /work/runs/$name/dpo/safety/model --suites file:/work/runs/val/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/val/safety-$name > /work/runs/val/safety-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> $T
done
echo done >> $T
