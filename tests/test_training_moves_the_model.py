"""Training is not a no-op: ``aloe train sft`` and ``aloe train dpo`` measurably move a model towards its data.

A guard against the silent failure every trainer wrapper can fall into (frozen parameters, a learning rate that
never reaches the optimizer, labels all masked, a policy that is its own reference, an export of the untrained
weights): each run below still finishes and writes every record, but these thresholds would not be met.

Both runs go through the project's own code paths (``train_sft``, ``train_dpo``) on the tiny random Llama (SmolLM2's
real tokenizer and chat template), with full fine-tuning, a fixed seed and learning rates high enough for a
random model (5e-3 and 1e-3), on tasks a model learns in a few steps. The thresholds read the runs' recorded
metrics (``OUT/metrics.json``, ``OUT/<stage>/metrics.json``) and the exported weights. Measured values (2-core CPU,
seeds as below) are noted next to each threshold, so the margin between them is visible.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from aloekit.train.dpo import DPORunConfig, train_dpo
from aloekit.train.sft import SFTRunConfig, train_sft

SFT_LEARNING_RATE = 5e-3
"""Full fine-tuning of a random 2-layer model whose (tied, 8x-scaled) embeddings make its first loss ~11.8 nats
over a 49k vocabulary: 5e-3 for 16 steps takes it to ~4 (1e-3 only to ~10.4 in 12 steps, too close to call).
The recipes' 2e-5 is for pretrained models."""
SFT_STEPS = 16
DPO_LEARNING_RATE = 1e-3
"""DPO only has to tell two fixed replies apart: 1e-3 for 8 steps gives a margin of ~2.6 nats (the recipes' 1e-6
is for pretrained models)."""
DPO_STEPS = 8

# --- SFT thresholds ---
MIN_TRAIN_LOSS_DROP = 0.30
"""The mean loss of the last logged steps is at least 30% below the first logged step's (measured: 11.81 -> 3.95,
67% lower; with learning rate 1e-9: 11.81 -> 11.88)."""
LAST_STEPS = 3
"""How many of the last logged steps are averaged (one step's loss is noisy: its batch holds 2 packed rows)."""
MIN_EVAL_LOSS_DROP = 0.30
"""The validation loss after training is at least 30% below the one before training (measured: 11.88 -> 4.19,
65% lower; with learning rate 1e-9: unchanged): not just lower, so a learning rate too small to matter fails."""
MIN_RELATIVE_WEIGHT_CHANGE = 1e-3
"""||exported - start|| / ||start|| over all parameters together (measured: SFT 0.20, DPO 0.024; with learning
rate 1e-9 about 1e-8; an untrained export gives 0). The embeddings (8x the usual init scale, see conftest)
dominate ||start||."""

# --- DPO thresholds ---
MIN_FINAL_MARGIN = 1.0
"""rewards/margins (beta * log-ratio of chosen minus rejected, in nats) at the last logged step and on the
validation pairs after training (measured: 2.60 and 2.61; with learning rate 1e-9: 2e-6 and 0). At the first
logged step the policy is its reference, so every reward is exactly 0. This is the threshold that catches a
policy that barely moves."""
MIN_FINAL_ACCURACY = 0.75
"""Share of the pairs (last step's batch, and the held-out validation pairs) whose chosen reply gets the higher
reward (measured: 1.0 on both); 0 at the first step, where both rewards are 0 and ties count as wrong. It checks
the direction only: any positive margin counts, so learning rate 1e-9 also reaches 1.0; the margin checks size."""

SYMPTOMS = {
    "fever": "Drink fluids and take paracetamol.",
    "cough": "Try honey and rest your voice.",
    "rash": "Keep the skin cool and dry.",
    "headache": "Rest in a dark quiet room.",
}
"""The SFT task: the reply is a fixed function of the symptom the user names."""
CHOSEN = "Please see a doctor today."
REJECTED = "banana rocket purple window."


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """The tiny model's matrices are too small to split across threads on a shared 2-core machine."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def symptom_chats(n: int, offset: int) -> list[dict[str, Any]]:
    """n conversations: 'Patient K reports a SYMPTOM.' -> that symptom's fixed advice."""
    names = list(SYMPTOMS)
    rows = []
    for i in range(n):
        symptom = names[i % len(names)]
        messages = [
            {"role": "user", "content": f"Patient {offset + i} reports a {symptom}. What should they do?"},
            {"role": "assistant", "content": SYMPTOMS[symptom]},
        ]
        rows.append({"id": f"s{offset + i}", "messages": messages})
    return rows


def preference_pairs(n: int, offset: int) -> list[dict[str, Any]]:
    """n pairs in TRL's conversational layout: the same good reply is chosen, the same bad one rejected."""
    names = list(SYMPTOMS)
    return [
        {
            "id": f"p{offset + i}",
            "prompt": [{"role": "user", "content": f"Patient {offset + i} has a {names[i % len(names)]}. Advice?"}],
            "chosen": [{"role": "assistant", "content": CHOSEN}],
            "rejected": [{"role": "assistant", "content": REJECTED}],
        }
        for i in range(n)
    ]


def relative_weight_change(start: Path, trained: Path) -> float:
    """||trained - start|| / ||start|| over every tensor of ``start`` (L2 norm of all parameters together)."""
    import torch
    from safetensors.torch import load_file

    before = {k: v for p in sorted(start.glob("*.safetensors")) for k, v in load_file(str(p)).items()}
    after = {k: v for p in sorted(trained.glob("*.safetensors")) for k, v in load_file(str(p)).items()}
    assert before and set(before) == set(after), sorted(set(before) ^ set(after))
    diff = sum(float(torch.sum((after[k].float() - v.float()) ** 2)) for k, v in before.items())
    norm = sum(float(torch.sum(v.float() ** 2)) for v in before.values())
    return math.sqrt(diff / norm)


def test_sft_lowers_training_and_validation_loss_and_changes_the_exported_weights(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """SFT on 32 conversations whose reply is a function of the question: the training loss falls by a clear
    share, the validation loss (held-out patients, same mapping) falls from its pre-training baseline, and the
    exported model's weights are not the starting model's."""
    data = tmp_path / "data"
    write_jsonl(data / "train.jsonl", symptom_chats(32, offset=0))
    write_jsonl(data / "validation.jsonl", symptom_chats(8, offset=100))
    out = tmp_path / "out"
    config = SFTRunConfig.model_validate(
        {
            "model": str(tiny_llama),
            "dataset": str(data),
            "out": str(out),
            "max_length": 128,
            "learning_rate": SFT_LEARNING_RATE,
            "max_steps": SFT_STEPS,
            "per_device_batch_size": 2,
            "gradient_accumulation": 1,
            "warmup_ratio": 0.0,
            "eval_steps": SFT_STEPS,  # evaluated once, at the end (and before training)
            "save_steps": 100,
            "logging": {"steps": 1, "tensorboard": False},
            "seed": 0,
        }
    )
    train_sft(config)

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["steps"] == SFT_STEPS
    losses = [entry["loss"] for entry in metrics["train_losses"]]
    assert len(losses) == SFT_STEPS, losses
    first, last = losses[0], sum(losses[-LAST_STEPS:]) / LAST_STEPS
    assert last <= (1 - MIN_TRAIN_LOSS_DROP) * first, f"training loss {first:.3f} -> {last:.3f}: {losses}"
    before, after = metrics["eval_loss_before"], metrics["eval_loss"]
    assert after <= (1 - MIN_EVAL_LOSS_DROP) * before, f"validation loss {before:.3f} -> {after:.3f}"
    change = relative_weight_change(tiny_llama, out / "model")
    assert change > MIN_RELATIVE_WEIGHT_CHANGE, f"relative L2 weight change {change:.3g}"


def test_dpo_raises_the_reward_margin_and_accuracy_from_zero(tiny_llama: Path, tmp_path: Path) -> None:
    """DPO on 16 pairs (the same good reply chosen, the same bad one rejected): the recorded reward margin and
    accuracy start at 0 (policy = reference) and end clearly positive, on the training batches and on held-out
    pairs; the stage's exported model differs from the one it started from."""
    data = tmp_path / "pairs"
    write_jsonl(data / "train.jsonl", preference_pairs(16, offset=0))
    write_jsonl(data / "validation.jsonl", preference_pairs(4, offset=100))
    out = tmp_path / "out"
    config = DPORunConfig.model_validate(
        {
            "model": str(tiny_llama),
            "out": str(out),
            "stages": [
                {
                    "name": "prefs",
                    "dataset": str(data),
                    "learning_rate": DPO_LEARNING_RATE,
                    "max_steps": DPO_STEPS,
                    "max_length": 96,
                }
            ],
            "per_device_batch_size": 4,
            "gradient_accumulation": 1,
            "warmup_ratio": 0.0,
            "save_steps": 100,
            "ref_cache_dir": str(tmp_path / "refcache"),
            "logging": {"steps": 1, "tensorboard": False},
            "seed": 0,
        }
    )
    train_dpo(config)

    metrics = json.loads((out / "prefs" / "metrics.json").read_text())
    first, last, held_out = metrics["first"], metrics["last"], metrics["eval"]
    assert first["step"] == 1 and last["step"] == DPO_STEPS, (first, last)
    assert first["rewards/margins"] == pytest.approx(0.0, abs=1e-6)
    assert first["rewards/accuracies"] == 0.0
    assert last["rewards/margins"] > MIN_FINAL_MARGIN, last
    assert last["rewards/accuracies"] >= MIN_FINAL_ACCURACY, last
    assert held_out["eval_rewards/margins"] > MIN_FINAL_MARGIN, held_out
    assert held_out["eval_rewards/accuracies"] >= MIN_FINAL_ACCURACY, held_out
    # Validation loss before -> after: log 2 at step 0 (policy = reference, stated), lower after training.
    assert metrics["eval_loss_before"] == pytest.approx(math.log(2))
    assert held_out["eval_loss"] < metrics["eval_loss_before"], held_out
    change = relative_weight_change(tiny_llama, out / "prefs" / "model")
    assert change > MIN_RELATIVE_WEIGHT_CHANGE, f"relative L2 weight change {change:.3g}"
