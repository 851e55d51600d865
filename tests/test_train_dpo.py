"""Specification of ``aloe train dpo`` (aloekit.train.dpo) and its reference log-prob cache (aloekit.train.refcache).

Runs on the tiny random Llama (SmolLM2's real tokenizer and chat template) with a few optimizer steps. The pairs
are learnable on purpose: every chosen reply is the same short sentence and every rejected one is random words,
so a high learning rate makes the policy prefer the chosen replies within a few steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from aloekit import models
from aloekit.errors import UserError
from aloekit.train import refcache
from aloekit.train.dpo import DPORunConfig, load_dpo_config, read_pairs, train_dpo
from support import accelerate_cpu

CHOSEN = "Please see a doctor today."
WORDS = ("banana", "rocket", "purple", "seven", "window", "quietly", "engine", "marble", "cloud", "hammer", "violin")


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """The tiny model's matrices are too small to split: with the machine's cores shared with other processes,
    torch's worker threads spend more time waiting for each other than computing (10-100x slower here)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_pairs(path: Path, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in range(n):
            prompt = [{"role": "user", "content": f"Question {seed}-{i}: I have a {rng.choice(WORDS)} pain."}]
            rejected = " ".join(rng.choices(WORDS, k=rng.randint(4, 7))) + "."
            row = {
                "id": f"p{seed}-{i}",
                "prompt": prompt,
                "chosen": [{"role": "assistant", "content": CHOSEN}],
                "rejected": [{"role": "assistant", "content": rejected}],
            }
            f.write(json.dumps(row) + "\n")
    return path


def pairs_folder(root: Path, seed: int, train: int = 16, validation: int = 4) -> Path:
    write_pairs(root / "train.jsonl", train, seed)
    write_pairs(root / "validation.jsonl", validation, seed + 1000)
    return root


def make_config(model: Path, out: Path, stages: list[dict[str, Any]], **overrides: Any) -> DPORunConfig:
    settings: dict[str, Any] = {
        "model": str(model),
        "out": str(out),
        "stages": stages,
        "per_device_batch_size": 4,
        "gradient_accumulation": 1,
        "warmup_ratio": 0.0,
        "save_steps": 4,
        "logging": {"steps": 1},
        "seed": 0,
        **overrides,
    }
    return DPORunConfig.model_validate(settings)


def stage(name: str, dataset: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "name": name,
        "dataset": str(dataset),
        "learning_rate": 5e-3,
        "max_steps": 6,
        "max_length": 128,
        **overrides,
    }


class ForwardCounter:
    """Counts forward passes of the Llama backbone (policy, reference and adapter-disabled passes alike) and
    calls of TRL's reference log-prob function."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from transformers.models.llama.modeling_llama import LlamaModel
        from trl.trainer.dpo_trainer import DPOTrainer

        self.forwards = 0
        self.reference_batches = 0
        forward, compute = LlamaModel.forward, DPOTrainer.compute_ref_log_probs

        def counting_forward(module: Any, *args: Any, **kwargs: Any) -> Any:
            self.forwards += 1
            return forward(module, *args, **kwargs)

        def counting_compute(trainer: Any, *args: Any, **kwargs: Any) -> Any:
            self.reference_batches += 1
            return compute(trainer, *args, **kwargs)

        monkeypatch.setattr(LlamaModel, "forward", counting_forward)
        monkeypatch.setattr(DPOTrainer, "compute_ref_log_probs", counting_compute)

    def reset(self) -> None:
        self.forwards = self.reference_batches = 0


def completion_logps(model_dir: Path, rows: list[dict[str, Any]], key: str) -> list[float]:
    """Sum of log-probs of each row's ``key`` reply given its prompt, computed from scratch with transformers."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    values = []
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
            full = tokenizer.apply_chat_template(row["prompt"] + row[key], tokenize=True)
            prompt_ids, full_ids = list(prompt["input_ids"]), list(full["input_ids"])
            assert full_ids[: len(prompt_ids)] == prompt_ids
            logits = model(torch.tensor([full_ids])).logits[0, :-1]
            token_logps = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(full_ids[1:])[:, None])[:, 0]
            values.append(float(token_logps[len(prompt_ids) - 1 :].sum()))
    return values


def logged(metrics: Path) -> list[dict[str, Any]]:
    return json.loads(metrics.read_text())["log_history"]


def safetensors_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.glob("*.safetensors")))


# --- two stages: chaining, logging, learning -------------------------------------------------------------------


def test_two_lora_stages_chain_the_reference_and_learn_the_preferences(tiny_llama: Path, tmp_path: Path) -> None:
    general = pairs_folder(tmp_path / "general", seed=1)
    redteam = write_pairs(tmp_path / "redteam.jsonl", 16, seed=2)
    config = make_config(
        tiny_llama,
        tmp_path / "out",
        [stage("general", general), stage("redteam", redteam)],
        lora={"r": 8, "alpha": 16, "dropout": 0.0},
        ref_cache_dir=str(tmp_path / "refcache"),
    )
    result = train_dpo(config)
    out = tmp_path / "out"

    # Layout: config as run, run manifest, per-stage folders, the final model.
    assert yaml.safe_load((out / "config.yaml").read_text())["stages"][1]["name"] == "redteam"
    run = json.loads((out / "manifest.json").read_text())
    assert [s["status"] for s in run["stages"]] == ["done", "done"]
    assert run["versions"]["trl"] and run["seed"] == 0
    assert run["model"]["fingerprint"] == models.fingerprint(models.resolve(str(tiny_llama)))
    for name in ("general", "redteam"):
        assert (out / name / "model" / "config.json").is_file()
        assert list((out / name / "model").glob("*.safetensors"))
        assert not list((out / name / "model").glob("adapter_*")), "LoRA must be merged into a standalone model"
        assert json.loads((out / name / "model" / "config.json").read_text())["use_cache"] is True
        assert list((out / name / "checkpoints").glob("checkpoint-*"))
        assert list((out / name / "runs").rglob("events.out.tfevents.*"))
    assert (out / "model").resolve() == (out / "redteam" / "model").resolve()
    assert Path(result["model"]) == out / "redteam" / "model"
    assert run["final_model"] == str(out / "redteam" / "model")

    # Stage 2's policy and reference are stage 1's result.
    first = json.loads((out / "general" / "manifest.json").read_text())
    second = json.loads((out / "redteam" / "manifest.json").read_text())
    stage1_model = models.fingerprint(models.resolve(str(out / "general" / "model")))
    assert first["model"]["fingerprint"] == stage1_model
    assert second["reference"]["fingerprint"] == second["policy"]["fingerprint"] == stage1_model
    assert second["reference"]["path"] == str(out / "general" / "model")
    assert first["reference"]["fingerprint"] == run["model"]["fingerprint"]

    # ... and the reference log-probs stage 2 trained against are those of stage 1's model, as computed from
    # scratch here (not those of the starting model, which stage 1 changed).
    rows = read_pairs(redteam)
    cached = refcache.load(Path(second["ref_cache"]["train"]["path"]))
    assert cached is not None and len(cached.chosen) == len(rows)
    under_stage1 = completion_logps(out / "general" / "model", rows, "chosen")
    under_start = completion_logps(tiny_llama, rows, "chosen")
    assert cached.chosen.tolist() == pytest.approx(under_stage1, abs=2e-3)
    assert max(abs(a - b) for a, b in zip(cached.chosen.tolist(), under_start, strict=True)) > 0.1
    rejected_under_stage1 = completion_logps(out / "general" / "model", rows, "rejected")
    assert cached.rejected.tolist() == pytest.approx(rejected_under_stage1, abs=2e-3)

    # Reward accuracy on the pairs rises: the first logged step sees the policy equal to its reference (rewards
    # all zero, accuracy 0), the last one prefers the chosen replies; so does the validation set.
    for name in ("general", "redteam"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["first"]["rewards/accuracies"] == 0.0
        assert metrics["last"]["rewards/accuracies"] >= 0.75
        assert metrics["last"]["rewards/margins"] > metrics["first"]["rewards/margins"]
        assert metrics["last"]["logps/chosen"] > metrics["first"]["logps/chosen"]
        assert metrics["step_seconds"]["steps"] == 6
        # Epochs covered are over the whole training file: 6 steps x 4 pairs over 16 pairs.
        assert metrics["pairs"] == {"train": 16, "given_to_trl": 16} and metrics["epochs"] == pytest.approx(1.5)
        assert any("logps/rejected" in entry for entry in metrics["log_history"])
    general_metrics = json.loads((out / "general" / "metrics.json").read_text())
    assert general_metrics["eval"]["eval_rewards/accuracies"] >= 0.75

    # The same curves reach TensorBoard.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(next((out / "general" / "runs").rglob("events.out.tfevents.*")).parent))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/rewards/accuracies", "train/rewards/margins", "train/logps/chosen", "train/logps/rejected"} <= tags
    accuracies = [e.value for e in events.Scalars("train/rewards/accuracies")]
    assert accuracies[0] == 0.0 and accuracies[-1] >= 0.75


# --- the reference cache ------------------------------------------------------------------------------------


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_a_repeated_stage_reads_the_cached_reference_and_runs_no_reference_forward(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lora: bool
) -> None:
    data = pairs_folder(tmp_path / "pairs", seed=3, train=12, validation=4)
    settings = {"lora": {"r": 8, "alpha": 16, "dropout": 0.0} if lora else None}
    stages = [stage("prefs", data, max_steps=3, learning_rate=5e-3 if lora else 1e-3)]
    counter = ForwardCounter(monkeypatch)

    cache_dir = tmp_path / "refcache"
    first = train_dpo(make_config(tiny_llama, tmp_path / "a", stages, ref_cache_dir=str(cache_dir), **settings))
    assert first["stages"][0]["ref_cache"] == {"train": "computed", "eval": "computed"}
    # 12 + 4 pairs, 4 per reference batch: 4 reference batches, once.
    assert counter.reference_batches == 4
    forwards_first = counter.forwards
    counter.reset()

    second = train_dpo(make_config(tiny_llama, tmp_path / "b", stages, ref_cache_dir=str(cache_dir), **settings))
    assert second["stages"][0]["ref_cache"] == {"train": "hit", "eval": "hit"}
    assert counter.reference_batches == 0
    # Only policy forwards: 3 training steps of one batch and 1 validation batch; no live reference, no
    # adapter-disabled pass.
    assert counter.forwards == 3 + 1
    assert forwards_first == counter.forwards + 4

    # Same result, bit for bit.
    a, b = tmp_path / "a" / "prefs", tmp_path / "b" / "prefs"
    assert safetensors_bytes(a / "model") == safetensors_bytes(b / "model")
    losses = [[e["loss"] for e in logged(run / "metrics.json") if "loss" in e] for run in (a, b)]
    assert losses[0] == losses[1] and len(losses[0]) == 3


def test_on_cpu_only_completion_positions_go_through_the_lm_head_with_the_same_log_probs(
    tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer import utils
    from trl.trainer.utils import add_fused_lm_head

    from aloekit.train.trl_compat import score_trained_positions_only

    rows: list[int] = []
    kernel = utils._ChunkedLogProbFunction

    class Recording:
        @staticmethod
        def apply(hidden: Any, *args: Any) -> Any:
            rows.append(hidden.shape[0])
            return kernel.apply(hidden, *args)

    monkeypatch.setattr(utils, "_ChunkedLogProbFunction", Recording)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    add_fused_lm_head(model)
    ids = torch.randint(0, 1000, (4, 30), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :18] = -100  # prompts: 18 tokens; completions: 12 (11 scored after the shift)
    labels[3, 25:] = -100  # a shorter, padded completion

    def log_probs() -> Any:
        with torch.no_grad():
            return model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs

    everything = log_probs()
    with score_trained_positions_only():
        compact = log_probs()
    completions = int((labels[:, 1:] != -100).sum())
    assert rows == [4 * 29, completions]
    scored = labels[:, 1:] != -100
    assert torch.allclose(compact[scored], everything[scored], atol=1e-5)
    assert not compact[~scored].any()
    assert utils._use_triton(torch.device("cpu")) is False  # the switch is put back


def test_cache_key_changes_with_the_dataset_the_model_and_the_tokenization() -> None:
    base = {
        "dataset_sha256": "a" * 64,
        "split": "train",
        "reference_fingerprint": "b" * 64,
        "tokenization": {"tokenizer": "c" * 64, "max_length": 1024, "precision": "fp32", "trl": "1.16.0"},
    }
    key = refcache.cache_key(**base)
    assert key == refcache.cache_key(**base)
    assert refcache.cache_key(**{**base, "dataset_sha256": "d" * 64}) != key
    assert refcache.cache_key(**{**base, "reference_fingerprint": "e" * 64}) != key
    assert refcache.cache_key(**{**base, "split": "eval"}) != key
    for name, value in (("max_length", 512), ("tokenizer", "f" * 64), ("precision", "bf16"), ("trl", "1.17.0")):
        assert refcache.cache_key(**{**base, "tokenization": {**base["tokenization"], name: value}}) != key


def test_cache_keys_follow_the_files_the_model_and_the_template(tiny_llama: Path, tmp_path: Path) -> None:
    """The inputs of the key are content hashes: editing the pairs file or the weights changes them."""
    import shutil

    from transformers import AutoTokenizer

    pairs = write_pairs(tmp_path / "p.jsonl", 4, seed=5)
    before = models.file_sha256(pairs)
    with pairs.open("a") as f:
        f.write(pairs.read_text().splitlines()[0] + "\n")
    assert models.file_sha256(pairs) != before

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama, copy)
    original = models.fingerprint(models.resolve(str(copy)))
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert models.fingerprint(models.resolve(str(copy))) != original

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    digest = refcache.tokenizer_hash(tokenizer)
    assert refcache.tokenizer_hash(AutoTokenizer.from_pretrained(tiny_llama)) == digest
    tokenizer.chat_template = tokenizer.chat_template.replace("<|im_start|>", "<|im_start|> ")
    assert refcache.tokenizer_hash(tokenizer) != digest


def test_a_cache_file_for_other_tokens_is_not_used(tmp_path: Path) -> None:
    from datasets import Dataset

    rows = Dataset.from_list(
        [
            {"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4]},
            {"prompt_ids": [5], "chosen_ids": [6], "rejected_ids": [7, 8]},
        ]
    )
    cache = refcache.RefCache(tmp_path, {"train": "k"})
    calls = []

    def compute() -> Any:
        calls.append(1)
        return rows.add_column("ref_chosen_logps", [-1.0, -2.0]).add_column("ref_rejected_logps", [-3.0, -4.0])

    first = cache.attach(rows, "train", compute)
    again = cache.attach(rows, "train", compute)
    assert len(calls) == 1 and cache.outcome["train"] == "hit"
    assert again["ref_chosen_logps"] == first["ref_chosen_logps"] == [-1.0, -2.0]
    assert again.features["ref_rejected_logps"].dtype == "float32"

    other = rows.map(lambda r: {"chosen_ids": [*r["chosen_ids"], 9]})
    cache.attach(other, "train", compute)
    assert len(calls) == 2 and cache.outcome["train"] == "computed"


# --- resume ------------------------------------------------------------------------------------------------


def test_resume_skips_done_stages_and_continues_the_current_one_without_a_reference_forward(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trl.trainer.dpo_trainer import DPOTrainer

    first_data = write_pairs(tmp_path / "one.jsonl", 8, seed=6)
    second_data = write_pairs(tmp_path / "two.jsonl", 8, seed=7)
    config = make_config(
        tiny_llama,
        tmp_path / "out",
        [stage("one", first_data, max_steps=2), stage("two", second_data, max_steps=6)],
        lora={"r": 4, "alpha": 8, "dropout": 0.0},
        save_steps=2,
        ref_cache_dir=str(tmp_path / "refcache"),
    )

    # Kill the run in stage two's 5th step, after its checkpoint-4.
    steps = {"n": 0}
    original = DPOTrainer.training_step

    def dying_step(trainer: Any, *args: Any, **kwargs: Any) -> Any:
        steps["n"] += 1
        if steps["n"] == 2 + 5:
            raise KeyboardInterrupt
        return original(trainer, *args, **kwargs)

    monkeypatch.setattr(DPOTrainer, "training_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        train_dpo(config)
    out = tmp_path / "out"
    assert json.loads((out / "one" / "manifest.json").read_text())["status"] == "done"
    assert json.loads((out / "two" / "manifest.json").read_text())["status"] == "running"
    with pytest.raises(UserError, match="--resume"):
        train_dpo(config)

    monkeypatch.setattr(DPOTrainer, "training_step", original)
    counter = ForwardCounter(monkeypatch)
    result = train_dpo(config, resume=True)
    assert [s["status"] for s in result["stages"]] == ["skipped", "trained"]
    assert result["stages"][1]["ref_cache"] == {"train": "hit"}
    assert counter.reference_batches == 0
    assert counter.forwards == 2  # steps 5 and 6 only
    two = json.loads((out / "two" / "manifest.json").read_text())
    assert two["status"] == "done" and two["steps"] == 6 and two["resumed_from"].endswith("checkpoint-4")
    assert (out / "model").resolve() == (out / "two" / "model").resolve()

    counter.reset()
    again = train_dpo(config, resume=True)
    assert [s["status"] for s in again["stages"]] == ["skipped", "skipped"]
    assert counter.forwards == 0


def test_resume_refuses_a_stage_trained_with_other_settings(
    tiny_llama: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_pairs(tmp_path / "p.jsonl", 4, seed=8)
    settings = {"ref_cache_dir": str(tmp_path / "refcache")}
    train_dpo(make_config(tiny_llama, tmp_path / "out", [stage("s", data, max_steps=1)], **settings))
    assert capsys.readouterr().out == "", "a library call prints nothing on stdout"
    changed = make_config(tiny_llama, tmp_path / "out", [stage("s", data, max_steps=1, beta=0.5)], **settings)
    with pytest.raises(UserError, match="other settings"):
        train_dpo(changed, resume=True)


def test_debug_tokens_shows_the_pairs_as_trl_tokenizes_them_and_trains_nothing(
    tiny_llama: Path, tmp_path: Path
) -> None:
    data = write_pairs(tmp_path / "p.jsonl", 4, seed=13)
    config = make_config(tiny_llama, tmp_path / "out", [stage("s", data), stage("t", data, max_length=48)])
    result = train_dpo(config, debug_tokens=2)
    assert result["status"] == "debug" and not (tmp_path / "out").exists()
    samples = result["samples"]
    assert [s["id"] for s in samples[:2]] == ["s/p13-0 chosen", "s/p13-0 rejected"]
    chosen = samples[0]
    text = "".join(token for token, _ in chosen["tokens"])
    scored = "".join(token for token, keep in chosen["tokens"] if keep)
    assert text.endswith(CHOSEN + "<|im_end|>\n") or text.endswith(CHOSEN + "<|im_end|>")
    assert scored.startswith(CHOSEN) and "user" not in scored  # only the reply is scored, end of turn included
    assert "Question 13-0" in text[: len(text) - len(scored)]
    assert chosen["trained"] == sum(keep for _, keep in chosen["tokens"])
    # Stage t: the 43-token prompt and its replies cut at max_length=48 (TRL's keep_start truncation).
    truncated = [s for s in samples if s["id"].startswith("t/")]
    assert len(truncated) == 4 and all(s["length"] == 48 and s["trained"] == 5 for s in truncated)


def test_plain_letter_pairs_train_in_one_stage_with_chat_pairs_each_tokenized_as_on_its_own(
    tiny_llama: Path, tmp_path: Path
) -> None:
    """A stage can keep up the letters a model is scored on ('...Answer:' then ' B', no chat template) while it
    learns from chat pairs: TRL trains one layout per dataset, so the chat pairs become the very text TRL renders
    from them, and every pair's tokens are those it gets in a file of its own kind (the chat pairs lose only the
    newline the template writes after the end of turn)."""
    chat = write_pairs(tmp_path / "chat.jsonl", 3, seed=21)
    letters = [
        {
            "id": f"q{i}:rot{i}",
            "prompt": f"Question: Which {i}?\nA. x\nB. y\nAnswer:",
            "chosen": " B",
            "rejected": " A",
            "plain": True,
        }
        for i in range(3)
    ]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(chat.read_text() + "".join(json.dumps(row) + "\n" for row in letters))

    def tokens(data: Path) -> dict[str, list[tuple[str, bool]]]:
        config = make_config(tiny_llama, tmp_path / "out", [stage("s", data)])
        return {s["id"]: s["tokens"] for s in train_dpo(config, debug_tokens=6)["samples"]}

    alone, together = tokens(chat), tokens(mixed)
    for key, pieces in alone.items():
        assert pieces[-1] == ("\n", True) and together[key] == pieces[:-1]  # ends on <|im_end|>, once
    plain = together["s/q1:rot1 chosen"]
    text = "".join(piece for piece, _ in plain)
    assert text == "Question: Which 1?\nA. x\nB. y\nAnswer: B<|im_end|>"  # no chat template, the space kept
    assert "".join(piece for piece, scored in plain if scored) == " B<|im_end|>"
    result = train_dpo(make_config(tiny_llama, tmp_path / "trained", [stage("s", mixed, max_steps=2)]))
    assert result["status"] == "done"


# --- bad configs and inputs: one-line UserErrors ---------------------------------------------------------------


def _one_line(error: pytest.ExceptionInfo[UserError], *names: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    for name in names:
        assert name in message, message


def test_bad_configs_are_one_line_user_errors(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_pairs(tmp_path / "p.jsonl", 4, seed=9)
    good = {"model": str(tiny_llama), "out": str(tmp_path / "out"), "stages": [{"name": "s", "dataset": str(data)}]}
    path = tmp_path / "dpo.yaml"

    def load(settings: dict[str, Any]) -> DPORunConfig:
        path.write_text(yaml.safe_dump(settings))
        return load_dpo_config(path)

    assert load(good).stages[0].beta == 0.1
    with pytest.raises(UserError) as error:
        load({**good, "learning_rat": 1e-5})
    _one_line(error, "dpo.yaml", "learning_rat", "unknown key")
    with pytest.raises(UserError) as error:
        load({**good, "stages": [{"name": "s", "dataset": str(data), "betta": 0.2}]})
    _one_line(error, "betta", "beta")
    with pytest.raises(UserError) as error:
        load({**good, "stages": []})
    _one_line(error, "no stages")
    with pytest.raises(UserError) as error:
        load({k: v for k, v in good.items() if k != "stages"})
    _one_line(error, "stages", "missing")
    with pytest.raises(UserError) as error:
        load({**good, "stages": [{"name": "s", "dataset": str(data)}, {"name": "s", "dataset": str(data)}]})
    _one_line(error, "used twice")
    with pytest.raises(UserError) as error:
        load({**good, "stages": [{"name": "s", "dataset": str(data), "loss_type": "dpo"}]})
    _one_line(error, "loss_type")
    with pytest.raises(UserError) as error:
        load_dpo_config(tmp_path / "absent.yaml")
    _one_line(error, "absent.yaml")

    missing = load({**good, "stages": [{"name": "s", "dataset": str(tmp_path / "nowhere")}]})
    with pytest.raises(UserError) as error:
        train_dpo(missing)
    _one_line(error, "nowhere", "not found")
    assert not (tmp_path / "out").exists(), "nothing is written before the inputs are checked"

    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    with pytest.raises(UserError) as error:
        train_dpo(load({**good, "stages": [{"name": "s", "dataset": str(empty_folder)}]}))
    _one_line(error, "train.jsonl")


def test_a_malformed_pair_names_its_file_and_line(tmp_path: Path) -> None:
    path = write_pairs(tmp_path / "p.jsonl", 2, seed=10)
    with path.open("a") as f:
        f.write(json.dumps({"prompt": "hi", "chosen": "same", "rejected": "same"}) + "\n")
    with pytest.raises(UserError) as error:
        read_pairs(path)
    _one_line(error, "p.jsonl:3")
    rows = read_pairs(write_pairs(tmp_path / "q.jsonl", 2, seed=11))
    assert len(rows) == 2
    assert rows[0]["prompt"][-1]["role"] == "user"
    assert rows[0]["chosen"] == [{"role": "assistant", "content": CHOSEN}]


# --- the embedded model -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_embedded_model_trains_a_lora_stage_into_a_standalone_model(smollm2_path: Path, tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = write_pairs(tmp_path / "p.jsonl", 4, seed=12)
    config = make_config(
        smollm2_path,
        tmp_path / "out",
        [stage("s", data, max_steps=2, learning_rate=1e-3, max_length=96)],
        lora={"r": 4, "alpha": 8},
        per_device_batch_size=2,
        ref_cache_dir=str(tmp_path / "refcache"),
    )
    result = train_dpo(config)
    assert result["stages"][0]["ref_cache"] == {"train": "computed"}

    folder = Path(result["model"])
    names = set()
    for shard in folder.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as f:
            names |= set(f.keys())
    assert not any("lora" in n for n in names)
    assert "lm_head.weight" not in names, "tied embeddings stay tied"
    trained = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(smollm2_path, dtype=torch.float32)
    q_proj = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(trained.state_dict()[q_proj], base.state_dict()[q_proj])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "I have a chest pain."}], add_generation_prompt=True, return_tensors="pt"
    )
    generated = trained.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > prompt["input_ids"].shape[1]


def test_two_processes_under_accelerate_launch_on_cpu(tiny_llama: Path, tmp_path: Path) -> None:
    """recipes/accelerate/ddp_cpu.yaml starts 2 processes (gloo): both train the stage, the first writes it.

    The reference cache starts empty, so the reference pass really runs across both processes (a cache hit would
    skip TRL's pass and the file hand-over between ranks it does)."""
    config = make_config(
        tiny_llama,
        tmp_path / "out",
        [stage("s1", pairs_folder(tmp_path / "p1", 0), max_steps=2)],
        ref_cache_dir=str(tmp_path / "refcache"),
    )
    path = tmp_path / "dpo.yaml"
    path.write_text(yaml.safe_dump(json.loads(config.model_dump_json())))
    result = accelerate_cpu("train", "dpo", str(path), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [(s["name"], s["status"]) for s in manifest["stages"]] == [("s1", "done")]
    assert (tmp_path / "out" / "s1" / "model" / "model.safetensors").is_file()
    assert len(list((tmp_path / "refcache").glob("*.safetensors"))) == 2, "train and eval values, computed now"


def test_a_stage_that_stops_early_scores_only_the_pairs_it_will_train_on_in_whole_groups() -> None:
    from aloekit.train.dpo import pairs_used

    rows = [{"id": f"q{i}:rot{k}"} for i in range(10) for k in range(4)]  # 10 questions x 4 rotations
    assert pairs_used(rows, None) == rows and pairs_used(rows, 400) == rows
    used = pairs_used(rows, 10)  # 10 pairs end inside q2's group: the group is completed
    assert [r["id"] for r in used] == [f"q{i}:rot{k}" for i in range(3) for k in range(4)]
    assert pairs_used(rows, 8) == rows[:8]  # a boundary: nothing added
