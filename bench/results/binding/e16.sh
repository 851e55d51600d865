#!/bin/bash
# e16: the recipe's DPO stages (general 1e-6 x 40, safety 3e-5 x 80 with the sft term, no answer-format pairs)
# from the binding probe's model p1, to see whether letter binding survives them; validation measurements only.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
until grep -aq "sft: finished in" /work/runs/rd13v/run.err; do sleep 10; done
pkill -f "aloe run /work/runs/rd13v/recipe.yaml"; pkill -f rd13v.sh
sleep 5
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure sft=/work/runs/rd13v/run/sft/train/model > /work/runs/rd13v/measure-sft.jsonl 2> /work/runs/rd13v/measure-sft.err
s=$(date +%s)
.venv/bin/aloe train dpo /work/runs/e16/dpo.yaml > /work/runs/e16/train.log 2>&1
echo "train rc=$? seconds=$(( $(date +%s) - s ))" >> /work/runs/e16/times
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure e16_general=/work/runs/e16/dpo/general/model e16_final=/work/runs/e16/dpo/safety/model > /work/runs/e16/measure.jsonl 2> /work/runs/e16/measure.err
s=$(date +%s)
for pair in "p1:/work/runs/binding/p1-model" "e16:/work/runs/e16/dpo/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  .venv/bin/aloe safety --model $model --suites file:/work/runs/e14/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/e16/val-$name > /work/runs/e16/val-$name.log 2>&1
  echo "$name safety rc=$? seconds=$(( $(date +%s) - s ))" >> /work/runs/e16/times
done
echo done >> /work/runs/e16/times
