cd /work/main
for pair in "base:smollm2-135m-instruct" "e11:/work/runs/e11/dpo/safety/model"; do
  name=${pair%%:*}; model=${pair#*:}
  HF_HUB_OFFLINE=1 .venv/bin/aloe safety --model $model --suites file:/work/runs/e11/suite-val.jsonl --styles plain \
    --backend llamacpp --dtype bfloat16 --batch-size 32 --max-tokens 40 --limit 200 --out /work/runs/e11/val-$name > /work/runs/e11/val-$name.log 2>&1
done
echo done > /work/runs/e11/eval.done
