#!/bin/bash
# rd13v: the recipe with cloze-keyed letter-format MedMCQA (SFT) and cloze-keyed answer-format pairs (DPO safety),
# up to its DPO stage; validation measurements only (bench/binding_probe.py --measure on val_medmcqa).
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
R=/work/runs/rd13v
while pgrep -f "rd13v/recipe.yaml.*--only data" >/dev/null; do sleep 10; done
date -u +"start %T" >> $R/times
setsid .venv/bin/aloe run $R/recipe.yaml --data-dir ../shared/data --out $R/run --from sft > $R/run.out 2> $R/run.err &
pid=$!
measured=0
while kill -0 $pid 2>/dev/null; do
  if [ $measured = 0 ] && grep -aq "sft: finished in" $R/run.err; then
    measured=1
    .venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
      --measure sft=$R/run/sft/train/model > $R/measure-sft.jsonl 2> $R/measure-sft.err &
  fi
  if grep -aq "dpo: finished in" $R/run.err; then
    sleep 5; kill -- -$pid; date -u +"stopped after dpo %T" >> $R/times; break
  fi
  sleep 20
done
wait $pid; echo "rc=$?" >> $R/times
.venv/bin/python bench/binding_probe.py --data-dir ../shared/data --work /work/runs/binding \
  --measure merged=$R/run/merge/model general=$R/run/dpo/train/general/model final=$R/run/dpo/train/safety/model \
  > $R/measure-rest.jsonl 2> $R/measure-rest.err
date -u +"measured %T" >> $R/times
