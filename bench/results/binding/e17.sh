#!/bin/bash
# e17: the letter phase through `aloe train sft` (packed rows, full-vocabulary loss on the answer) from rd12's SFT
# model, then bench/binding_probe.py --measure against rd12's SFT model.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
while pgrep -f "aloe data build /work/runs/e17" >/dev/null || ! grep -q '^rc=' /work/runs/test.log; do sleep 10; done
s=$(date +%s)
.venv/bin/aloe train sft /work/runs/e17/sft.yaml > /work/runs/e17/sft.log 2>&1
echo "sft rc=$? seconds=$(( $(date +%s) - s ))" >> /work/runs/e17/times
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure e17=/work/runs/e17/sft/model rd12_sft=/work/runs/rd12/sft/train/model > /work/runs/e17/measure.jsonl 2> /work/runs/e17/measure.err
echo "measured $(date -u +%T)" >> /work/runs/e17/times
