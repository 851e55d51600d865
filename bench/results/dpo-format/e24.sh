#!/bin/bash
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
T=/work/runs/e24.times
s=$(date +%s); .venv/bin/aloe data prefs /work/runs/e24/prefs.yaml --out /work/runs/e24/prefs_safety --data-dir ../shared/data > /work/runs/e24/prefs.log 2>&1
echo "prefs rc=$? seconds=$(( $(date +%s) - s ))" >> $T
s=$(date +%s); .venv/bin/aloe train dpo /work/runs/e24/dpo.yaml > /work/runs/e24/train.log 2>&1
echo "train rc=$? seconds=$(( $(date +%s) - s ))" >> $T
echo done >> $T
