"""Supervised fine-tuning (aloekit.train.sft): configs, packing without attention across examples, exact resume
after a SIGKILL, run records and the standalone export. Tiny random models except the test marked slow."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from aloekit.config import load_yaml
from aloekit.errors import UserError
from aloekit.train.packed_attention import check_packed_attention
from aloekit.train.sft import (
    SFTRunConfig,
    build_trainer,
    complete_checkpoints,
    discard_incomplete_checkpoints,
    train_sft,
)
from support import MEDICAL_PROMPTS, WORDS, accelerate_cpu, aloe, assert_one_line_error

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def conversations(n: int, seed: int) -> list[dict]:
    """Synthetic medical-ish chats: some with a system prompt, some with two turns."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        messages = [{"role": "system", "content": "You are a careful clinician."}] if i % 3 == 0 else []
        for turn in range(1 + i % 2):
            question = rng.choice(MEDICAL_PROMPTS) if turn == 0 else " ".join(rng.choices(WORDS, k=6)) + "?"
            messages.append({"role": "user", "content": question})
            messages.append({"role": "assistant", "content": " ".join(rng.choices(WORDS, k=rng.randint(4, 24)))})
        rows.append({"id": f"c{i}", "messages": messages, "source": "synthetic", "task": "open_qa"})
    return rows


def write_dataset(folder: Path, train: int = 40, validation: int = 6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train", conversations(train, 1)), ("validation", conversations(validation, 2))):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def tiny_config(model: Path, data: Path, out: Path, **overrides: object) -> dict:
    config = {
        "model": str(model),
        "dataset": str(data),
        "out": str(out),
        "max_length": 128,
        "learning_rate": 1e-3,
        "max_steps": 8,
        "per_device_batch_size": 1,
        "gradient_accumulation": 2,
        "eval_steps": 4,
        "save_steps": 2,
        "save_total_limit": 2,
        "lora": {"r": 8, "alpha": 16, "dropout": 0.1},  # dropout: the RNG state must be resumed too
        "logging": {"steps": 2},
    }
    config.update(overrides)
    return config


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """``aloe train ARGS`` in a fresh interpreter."""
    return aloe("train", *args, env={"TOKENIZERS_PARALLELISM": "false"}, timeout=timeout)


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


# --- configs -------------------------------------------------------------------------------------------------


def test_config_defaults_are_safe_on_a_cpu(tmp_path: Path) -> None:
    config = SFTRunConfig(model="m", dataset="d", out=tmp_path)
    assert config.packing and not config.gradient_checkpointing and config.scheduler == "cosine"
    assert config.lora is None  # full fine-tuning unless LoRA is asked for
    for name, field in SFTRunConfig.model_fields.items():
        assert field.description, name


def test_bad_configs_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "sft.yaml"
    path.write_text("model: m\ndataset: d\nout: o\nlearning_rat: 1e-4\n")
    with pytest.raises(UserError, match=r"sft.yaml line 4: unknown key 'learning_rat' \(known keys: model,") as e:
        load_yaml(path, SFTRunConfig, what="SFT config")
    assert "\n" not in str(e.value)
    path.write_text("dataset: d\nout: o\n")
    with pytest.raises(UserError, match="'model' is missing"):
        load_yaml(path, SFTRunConfig, what="SFT config")
    path.write_text("model: m\ndataset: d\nout: o\nlora: {r: 0}\n")
    with pytest.raises(UserError, match=r"line 4: lora.r: Input should be greater than or equal to 1"):
        load_yaml(path, SFTRunConfig, what="SFT config")
    path.write_text("model: m\ndataset: d\nout: o\nlora: {qlora: true}\n")
    with pytest.raises(UserError, match="qlora needs a CUDA GPU"):
        load_yaml(path, SFTRunConfig, what="SFT config")


def test_cli_bad_config_and_missing_dataset_are_one_line_errors(tmp_path: Path, tiny_llama: Path) -> None:
    bad = write_config(tmp_path / "bad.yaml", {"model": "m", "dataset": "d", "out": "o", "epochs": -1})
    line = assert_one_line_error(run_cli("sft", str(bad)), str(bad), "epochs: Input should be greater than 0")
    assert line.startswith(f"error: {bad} line ")
    missing = write_config(tmp_path / "m.yaml", tiny_config(tiny_llama, tmp_path / "nope", tmp_path / "out"))
    assert_one_line_error(run_cli("sft", str(missing), "--debug-tokens", "1"), "dataset", "nope")
    assert_one_line_error(run_cli("sft", str(tmp_path / "absent.yaml")), "SFT config not found")


# --- packing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_packed_batch_equals_examples_run_separately(tiny_llama: Path, attention: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(tiny_llama, attn_implementation=attention).eval()
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randint(20, 5000, (n,), generator=generator).tolist() for n in (11, 30, 4, 17)]
    # TRL's padding-free collator: one row, position ids restarting at 0, no attention mask.
    batch = DataCollatorForLanguageModeling(pad_token_id=2, padding_free=True)(
        [{"input_ids": e, "labels": e} for e in examples]
    )
    assert batch["input_ids"].shape == (1, sum(map(len, examples)))
    assert "attention_mask" not in batch
    with torch.no_grad():
        packed = model(**batch, use_cache=False)
        separate = [model(input_ids=torch.tensor([e]), labels=torch.tensor([e]), use_cache=False) for e in examples]
        together = model(input_ids=batch["input_ids"], use_cache=False)  # what cross-example attention gives
    logits = torch.cat([s.logits[0] for s in separate])
    assert (packed.logits[0] - logits).abs().max() < 1e-4
    # The loss over the packed row is the token-weighted mean of the separate losses (first tokens excluded).
    weights = torch.tensor([len(e) - 1 for e in examples], dtype=torch.float32)
    expected = (torch.stack([s.loss for s in separate]) * weights).sum() / weights.sum()
    assert abs(packed.loss.item() - expected.item()) < 1e-4
    # The check is not vacuous: attending across examples changes the logits a lot.
    assert (together.logits[0] - logits).abs().max() > 0.05


def test_packing_check_refuses_a_model_whose_attention_crosses_examples(tiny_llama: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    assert check_packed_attention(model)["separate"] < 1e-4

    class Leaky(torch.nn.Module):
        """A model that ignores packed position ids (an explicit all-ones mask: plain causal attention)."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = model
            self.config = model.config

        def forward(self, input_ids, attention_mask=None, **kwargs):
            kwargs = {k: v for k, v in kwargs.items() if k in ("position_ids", "use_cache")}
            return self.inner(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **kwargs)

    with pytest.raises(UserError, match=r"packed examples attend to each other.*packing: false"):
        check_packed_attention(Leaky())


def test_trainer_batches_are_our_masked_conversations_packed(tmp_path: Path, tiny_llama: Path) -> None:
    """What TRL feeds the model: rows of whole conversations, position ids restarting at each, and our labels."""
    data = write_dataset(tmp_path / "data")
    config = SFTRunConfig.model_validate(tiny_config(tiny_llama, data, tmp_path / "out", per_device_batch_size=2))
    built = build_trainer(config)
    by_tokens = {tuple(s.input_ids): s.labels for s in built.train.samples}
    seen = 0
    for batch in built.trainer.get_train_dataloader():
        assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
        ids, labels, positions = (batch[k][0].tolist() for k in ("input_ids", "labels", "position_ids"))
        assert len(ids) <= 2 * config.max_length
        starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
        for start, end in itertools.pairwise(starts):
            segment = tuple(ids[start:end])
            assert segment in by_tokens, "a packed segment is not one whole conversation"
            assert positions[start:end] == list(range(end - start))
            assert labels[start:end] == [-100, *by_tokens[segment][1:]]
            seen += 1
    assert seen == len(built.train.samples) == 40
    assert [p.name for p in (tmp_path / "out").rglob("*")] == ["checkpoints"]  # nothing written yet


def test_without_packing_each_row_is_one_padded_conversation(tmp_path: Path, tiny_llama: Path) -> None:
    data = write_dataset(tmp_path / "data", train=6, validation=0)
    config = tiny_config(tiny_llama, data, tmp_path / "out", packing=False, per_device_batch_size=3)
    built = build_trainer(SFTRunConfig.model_validate(config))
    assert built.packing_check is None
    labels_of = {tuple(s.input_ids): s.labels for s in built.train.samples}
    rows = 0
    for batch in built.trainer.get_train_dataloader():
        for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
            n = int(mask.sum())
            assert labels_of[tuple(ids[:n].tolist())] == labels[:n].tolist()
            assert set(labels[n:].tolist()) <= {-100}
            rows += 1
    assert rows == 6


def test_checkpoints_a_kill_left_half_written_are_discarded(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoints"
    for step, state in ((2, "{}"), (4, None), (6, '{"global_step": '), (10, "{}")):
        (folder / f"checkpoint-{step}").mkdir(parents=True)
        (folder / f"checkpoint-{step}" / "model.safetensors").write_bytes(b"x")
        if state is not None:
            (folder / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    assert [p.name for p in complete_checkpoints(folder)] == ["checkpoint-2", "checkpoint-10"]
    assert discard_incomplete_checkpoints(folder) == ["checkpoint-4", "checkpoint-6"]
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-10", "checkpoint-2"]


# --- a full run, killed and resumed ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory, tiny_llama: Path) -> tuple[dict, dict]:
    """One complete tiny run in this process: its config and returned metrics."""
    root = tmp_path_factory.mktemp("sft-full")
    config = tiny_config(tiny_llama, write_dataset(root / "data"), root / "out")
    metrics = train_sft(SFTRunConfig.model_validate(config))
    return config, metrics


def test_sigkill_then_resume_equals_an_uninterrupted_run(
    tmp_path: Path, uninterrupted: tuple[dict, dict], tiny_llama: Path
) -> None:
    reference, expected = uninterrupted
    out = tmp_path / "out"
    config_path = write_config(tmp_path / "sft.yaml", {**reference, "out": str(out)})
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "aloekit.cli", "train", "sft", str(config_path), "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no checkpoint within 4 minutes"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()
    assert not (out / "model").exists(), "the run finished before it was killed"
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    result = run_cli("sft", str(config_path), "--resume", "--quiet")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"] in ("checkpoint-2", "checkpoint-4", "checkpoint-6")
    assert metrics["steps"] == expected["steps"] == 8
    resumed, reference_weights = load_weights(out / "model"), load_weights(Path(expected["model"]))
    assert resumed.keys() == reference_weights.keys()
    for name, tensor in reference_weights.items():
        assert (resumed[name] - tensor).abs().max() <= 1e-5, name
    assert metrics["eval_loss"] == pytest.approx(expected["eval_loss"], abs=1e-5)
    assert metrics["eval_loss_before"] == pytest.approx(expected["eval_loss_before"], abs=1e-6)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["resumed"][0]["from"] == metrics["resumed_from"]
    # Training did change the weights (the comparison above is not between two untouched copies).
    base = load_weights(tiny_llama)
    assert max((resumed[k] - base[k]).abs().max().item() for k in base if k in resumed) > 1e-4


def test_a_run_writes_its_records_and_a_standalone_model(uninterrupted: tuple[dict, dict]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, metrics = uninterrupted
    out = Path(config["out"])
    assert yaml.safe_load((out / "config.yaml").read_text())["learning_rate"] == config["learning_rate"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["seed"] == 0  # TrainConfig's default, the recipes' seed
    assert {"trl", "transformers", "peft", "torch", "aloekit"} <= set(manifest["versions"])
    train_file = Path(config["dataset"]) / "train.jsonl"
    assert manifest["dataset"]["train_sha256"] == hashlib.sha256(train_file.read_bytes()).hexdigest()
    recorded = json.loads((out / "metrics.json").read_text())
    assert recorded["steps"] == 8 and recorded["tokens_per_second"] > 0
    assert [e["step"] for e in recorded["eval_losses"]] == [4, 8]
    assert recorded["eval_loss"] < recorded["eval_loss_before"]
    assert recorded["data"]["train"]["kept"] == 40 and recorded["packing_check"]["separate"] < 1e-4
    # Checkpoints rotate (last 2 kept); TensorBoard events land in OUT/runs only.
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"]
    assert list((out / "runs").glob("events.out.tfevents.*"))
    assert not (out / "checkpoints" / "runs").exists()

    model_dir = Path(metrics["model"])
    names = {p.name for p in model_dir.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "chat_template.jinja"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pth")) for n in names)
    card = (model_dir / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "transformers" and {"medical", "aloekit", "lora"} <= set(front["tags"])
    assert "eval_loss" in card
    # LoRA is merged: plain transformers loads a plain model (no adapter files) and generates.
    assert not any("lora" in k for k in load_weights(model_dir))
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "fever?"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 4 or tokenizer.eos_token_id in generated[0]


def test_a_finished_out_folder_is_not_overwritten_and_resume_needs_the_same_config(
    uninterrupted: tuple[dict, dict],
) -> None:
    config, _ = uninterrupted
    with pytest.raises(UserError, match="already holds a run: pass --resume"):
        train_sft(SFTRunConfig.model_validate(config))
    with pytest.raises(UserError, match=r"differs from the run in .* \(learning_rate\)"):
        train_sft(SFTRunConfig.model_validate({**config, "learning_rate": 1e-4}), resume=True)


def test_debug_tokens_prints_trained_tokens_and_trains_nothing(tmp_path: Path, tiny_llama: Path) -> None:
    config = tiny_config(tiny_llama, write_dataset(tmp_path / "data"), tmp_path / "out")
    rows = train_sft(SFTRunConfig.model_validate(config), debug_tokens=2)["samples"]
    assert [r["id"] for r in rows] == ["c0", "c1"]
    trained = "".join(t for t, keep in rows[0]["tokens"] if keep)
    assert trained == conversations(1, 1)[0]["messages"][-1]["content"] + "<|im_end|>"
    result = run_cli("sft", str(write_config(tmp_path / "sft.yaml", config)), "--debug-tokens", "1")
    assert result.returncode == 0, result.stderr
    assert "[<|im_end|>]" in result.stdout and "c0" in result.stdout
    assert not (tmp_path / "out").exists()


def test_data_parallel_on_cpu_with_the_shipped_accelerate_config(tmp_path: Path, tiny_llama: Path) -> None:
    """recipes/accelerate/ddp_cpu.yaml starts 2 processes (gloo); the first exports, both train."""
    config = write_config(
        tmp_path / "sft.yaml",
        tiny_config(tiny_llama, write_dataset(tmp_path / "data"), tmp_path / "out", max_steps=4, eval_steps=4),
    )
    result = accelerate_cpu("train", "sft", str(config), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["steps"] == 4
    assert metrics["eval_loss"] < metrics["eval_loss_before"]
    assert (tmp_path / "out" / "model" / "model.safetensors").is_file()
    assert result.stderr.count("SFT finished") == 1  # one summary, from the first process


# --- the embedded model ----------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "medical_meadow_small").is_dir(), reason="shared data folder not found")
def test_sft_on_smollm2_lowers_validation_loss_and_exports_a_working_model(tmp_path: Path, smollm2_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aloekit.data.sources import load_source
    from aloekit.data.tally import Tally

    samples = load_source("medical_meadow", data_dir=SHARED_DATA, tally=Tally(), limit=220)
    rows = [s.to_json() for s in samples]
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:200]))
    (data / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[200:]))
    config = SFTRunConfig.model_validate(
        {
            "model": str(smollm2_path),
            "dataset": str(data),
            "out": str(tmp_path / "out"),
            "lora": {"r": 16, "alpha": 32},
            "max_length": 256,
            "learning_rate": 1e-3,
            "max_steps": 6,
            "per_device_batch_size": 2,
            "gradient_accumulation": 1,
            "warmup_ratio": 0.1,
            "eval_steps": 6,
            "save_steps": 6,
            "logging": {"steps": 2},
        }
    )
    metrics = train_sft(config)
    assert metrics["eval_loss"] < metrics["eval_loss_before"] - 0.05, metrics
    model_dir = Path(metrics["model"])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What are the symptoms of anaemia?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    with torch.no_grad():
        output = model.generate(**prompt, max_new_tokens=12, do_sample=False)
    answer = tokenizer.decode(output[0, prompt["input_ids"].shape[1] :], skip_special_tokens=True)
    assert answer.strip()
    front = yaml.safe_load((model_dir / "README.md").read_text().split("---")[1])
    assert front["datasets"] == ["medalpaca/medical_meadow_wikidoc_patient_information"]
