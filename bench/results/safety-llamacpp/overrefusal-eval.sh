#!/bin/bash
# Refusal on the carved validation prompts of the safety preference data (33 benign look-alikes / medication
# questions, 70 harmful requests in their styles), never trained on; 3 models.
cd /work/main
for pair in "merged:/work/runs/rd5/merge/model" "dpo_safety_rd5:/work/runs/rd5/dpo/train/safety/model" "dpo_safety_lr3e-5:/work/runs/exp-or/dpo-lr3e-5/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  HF_HUB_OFFLINE=1 .venv/bin/aloe safety --model $model --suites file:/work/runs/exp-or/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 103 --out /work/runs/exp-or/val-$name > /work/runs/exp-or/val-$name.log 2>&1
done
echo done > /work/runs/exp-or/eval.done
