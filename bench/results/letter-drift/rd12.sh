#!/bin/bash
# rd12: the recipe at HEAD up to its DPO stage (reproduces rd11's DPO-general and final models), for e14.
cd /work/main
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
date -u +"start %T" > /work/runs/rd12.times
setsid .venv/bin/aloe run recipes/real-data.yaml --data-dir ../shared/data --out /work/runs/rd12 > /work/runs/rd12.out 2> /work/runs/rd12.err &
pid=$!
while kill -0 $pid 2>/dev/null; do
  if grep -aq "dpo: finished in" /work/runs/rd12.err; then
    sleep 5; kill -- -$pid; date -u +"stopped after dpo %T" >> /work/runs/rd12.times; break
  fi
  sleep 20
done
wait $pid; echo "rc=$?" >> /work/runs/rd12.times
