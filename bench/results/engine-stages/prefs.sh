#!/bin/bash
# Issue 18 DW5: the preference-pair stage (prefs_safety: red-teaming, benign, answer-format pairs) on hf vs llamacpp.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python /work/runs/pb/mkcfg.py /work/runs/rd10/data/prefs_safety/config.yaml /work/runs/pb
for b in hf llamacpp; do
  s=$(date +%s.%N)
  .venv/bin/aloe data prefs /work/runs/pb/prefs-$b.yaml --data-dir ../shared/data --out /work/runs/pb/prefs-$b --overwrite > /work/runs/pb/prefs-$b.log 2>&1
  rc=$?
  e=$(date +%s.%N)
  echo "$b rc=$rc seconds=$(echo "$e - $s" | bc)" >> /work/runs/pb/prefs.times
done
