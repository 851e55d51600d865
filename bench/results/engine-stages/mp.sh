#!/bin/bash
# Issue 18 DW5: Medprompt (kNN few-shot + CoT + 3-run choice-shuffle ensemble) on hf vs llamacpp, same questions.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
test -d /work/runs/pb/cotdb || .venv/bin/aloe medprompt db --out /work/runs/pb/cotdb --source medmcqa --source pubmedqa --data-dir ../shared/data --limit 2000 --exclude medmcqa > /work/runs/pb/cotdb.log 2>&1
for b in hf llamacpp; do
  s=$(date +%s.%N)
  .venv/bin/aloe eval --model /work/runs/rd10/dpo/train/safety/model --mode medprompt --benchmarks mmlu_clinical_knowledge --data-dir ../shared/data --limit 30 --cot-db /work/runs/pb/cotdb --k 3 --runs 3 --max-tokens 64 --backend $b --dtype bfloat16 --out /work/runs/pb/mp-$b > /work/runs/pb/mp-$b.log 2>&1
  rc=$?
  e=$(date +%s.%N)
  echo "$b rc=$rc seconds=$(echo "$e - $s" | bc)" >> /work/runs/pb/mp.times
done
