"""Specification of ``aloe export gguf``: a transformers folder becomes a GGUF file that transformers itself loads
back to the same model (no llama.cpp needed), with its tokenizer and chat template, and an Ollama Modelfile.

transformers reads GGUF with its own inverse of llama.cpp's conventions (it un-permutes LLaMA's query/key rows,
subtracts Gemma's norm offset, dequantizes Q8_0), so a wrong layout shows up as different logits.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from aloekit.errors import UserError
from aloekit.export.gguf import export_gguf, permute_for_rope
from support import MEDICAL_PROMPTS, aloe, assert_one_line_error, without_module

TOKENS = [[1, 9690, 198, 504, 3458, 314, 260, 1345, 2, 198, 1, 4093, 198], [41, 3215, 282, 11908, 30, 216, 36, 37]]


def _logits(model: object, rows: list[list[int]]) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return np.stack([model(input_ids=torch.tensor([r])).logits[0, -1].float().numpy() for r in rows])  # type: ignore[operator]


def _load(folder: Path) -> object:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _load_gguf(path: Path) -> object:
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


def _with_weights(folder: Path, transform: object) -> object:
    """The model of ``folder`` with ``transform`` applied to every matrix (what the file's precision does to it)."""
    import torch

    model = _load(folder)
    with torch.no_grad():
        for p in model.parameters():  # type: ignore[attr-defined]
            if p.ndim == 2:
                p.copy_(torch.from_numpy(transform(p.numpy())))  # type: ignore[operator]
    return model


def _q8_0(weight: np.ndarray) -> np.ndarray:
    import gguf

    kind = gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.dequantize(gguf.quants.quantize(weight, kind), kind).reshape(weight.shape)


def _tensor_bytes(path: Path) -> int:
    import gguf

    return sum(int(t.n_bytes) for t in gguf.GGUFReader(path).tensors)


def test_rope_permutation_interleaves_each_heads_two_halves() -> None:
    # One head of dimension 4, one input column: rows [a0 a1 | b0 b1] become [a0 b0 a1 b1].
    rows = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert permute_for_rope(rows, 1)[:, 0].tolist() == [0.0, 2.0, 1.0, 3.0]
    # Two heads are permuted independently.
    two = np.arange(8.0)[:, None]
    assert permute_for_rope(two, 2)[:, 0].tolist() == [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]


def test_f16_export_loads_back_as_the_same_model_rounded_to_f16(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.gguf"
    result = export_gguf(str(tiny_llama), out, quant="f16")

    assert result.architecture == "llama" and out.is_file()
    exported = _logits(_load_gguf(out), TOKENS)
    rounded = _logits(_with_weights(tiny_llama, lambda w: w.astype(np.float16).astype(np.float32)), TOKENS)
    original = _logits(_load(tiny_llama), TOKENS)
    # Exactly the f16-rounded model (only float32 arithmetic order differs); close to the fp32 original.
    np.testing.assert_allclose(exported, rounded, atol=1e-4, rtol=0)
    assert np.abs(exported - original).max() < 0.05
    assert (exported.argmax(-1) == original.argmax(-1)).all()


def test_q8_0_export_loads_back_as_the_same_model_quantized_to_q8_0(tiny_llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny-q8.gguf"
    export_gguf(str(tiny_llama), out, quant="q8_0")
    f16 = export_gguf(str(tiny_llama), tmp_path / "f16" / "x.gguf", quant="f16").path

    exported = _logits(_load_gguf(out), TOKENS)
    quantized = _logits(_with_weights(tiny_llama, _q8_0), TOKENS)
    original = _logits(_load(tiny_llama), TOKENS)
    np.testing.assert_allclose(exported, quantized, atol=1e-4, rtol=0)
    assert np.abs(exported - original).max() < 0.5  # Q8_0: 8 bits per weight, a small, bounded error
    assert (exported.argmax(-1) == original.argmax(-1)).all()
    # Q8_0 stores 34 bytes per 32 weights, f16 64: the tensor data shrinks to 53% (the tokenizer does not).
    assert _tensor_bytes(out) < 0.55 * _tensor_bytes(f16)


def test_bf16_export_holds_the_weights_torch_rounds_to_bf16(tiny_llama: Path, tmp_path: Path) -> None:
    import gguf
    import torch

    out = export_gguf(str(tiny_llama), tmp_path / "tiny-bf16.gguf", quant="bf16").path
    stored = {t.name: t for t in gguf.GGUFReader(out).tensors}
    matrices = [t for t in stored.values() if t.tensor_type == gguf.GGMLQuantizationType.BF16]
    assert matrices and all(len(t.shape) == 2 for t in matrices)  # norms stay f32, as llama.cpp keeps them

    exported = _logits(_load_gguf(out), TOKENS)
    rounded = _logits(_with_weights(tiny_llama, lambda w: torch.from_numpy(w).bfloat16().float().numpy()), TOKENS)
    # The same numbers a bf16 hf model runs with (round to nearest even), not a second rounding of f16.
    np.testing.assert_allclose(exported, rounded, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def exported_llama(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "tiny.gguf"
    export_gguf(str(tiny_llama), out, quant="f16")
    return out


def test_tokenizer_and_chat_template_round_trip(tiny_llama: Path, exported_llama: Path) -> None:
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(tiny_llama)
    loaded = AutoTokenizer.from_pretrained(exported_llama.parent, gguf_file=exported_llama.name)

    texts = [*MEDICAL_PROMPTS, "Dose: 2.5 mg/kg  twice daily\n\n- check K+ <|im_end|> café 12345"]
    for text in texts:
        assert (
            loaded(text, add_special_tokens=False)["input_ids"] == original(text, add_special_tokens=False)["input_ids"]
        )
    chat = [{"role": "user", "content": MEDICAL_PROMPTS[0]}]
    assert loaded.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == original.apply_chat_template(
        chat, tokenize=False, add_generation_prompt=True
    )
    assert (loaded.bos_token_id, loaded.eos_token_id) == (original.bos_token_id, original.eos_token_id)


def test_the_file_carries_llama_cpps_metadata(exported_llama: Path, tiny_llama: Path) -> None:
    import gguf

    reader = gguf.GGUFReader(exported_llama)
    fields = {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}
    assert fields["general.architecture"] == "llama"
    assert fields["tokenizer.ggml.model"] == "gpt2"
    # The fixture's tokenizer splits with GPT-2's regex alone (no digit splitting): llama.cpp's "gpt-2".
    assert fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.eos_token_id"] == 2  # <|im_end|>, SmolLM2's end of turn
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in fields["tokenizer.chat_template"]
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "F16"
    assert "output.weight" not in types  # tied embeddings: llama.cpp reuses token_embd


def _modelfile(path: Path) -> dict[str, list[str]]:
    """Parse Ollama's Modelfile syntax: INSTRUCTION value, values may be \"\"\"multi-line\"\"\"; # comments."""
    text = path.read_text()
    found: dict[str, list[str]] = {}
    pattern = re.compile(
        r'^(FROM|TEMPLATE|SYSTEM|PARAMETER|ADAPTER|LICENSE|MESSAGE)\s+("""(.*?)"""|[^\n]*)$', re.S | re.M
    )
    position = 0
    for match in pattern.finditer(text):
        gap = text[position : match.start()]
        assert all(not line.strip() or line.startswith("#") for line in gap.splitlines()), gap
        found.setdefault(match.group(1), []).append(match.group(3) if match.group(3) is not None else match.group(2))
        position = match.end()
    assert all(not line.strip() or line.startswith("#") for line in text[position:].splitlines())
    return found


def test_modelfile_has_from_chatml_template_default_system_and_stops(exported_llama: Path) -> None:
    found = _modelfile(exported_llama.with_name("Modelfile"))

    assert found["FROM"] == [f"./{exported_llama.name}"]
    (template,) = found["TEMPLATE"]
    assert "<|im_start|>user\n{{ .Content }}<|im_end|>" in template
    assert "<|im_start|>assistant\n" in template and "{{ .System }}" in template
    # SmolLM2's template adds a system prompt when there is none; Ollama's SYSTEM is that default.
    assert found["SYSTEM"] == ["You are a helpful AI assistant named SmolLM, trained by Hugging Face"]
    assert sorted(found["PARAMETER"]) == ['stop "<|im_end|>"', 'stop "<|im_start|>"']


def _gemma3_folder(root: Path, smollm2_path: Path) -> Path:
    """A tiny Gemma 3 text model shaped as llama.cpp expects Gemma 3: five sliding layers, then a global one,
    queries scaled by 1/sqrt(head_dim)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig

    tokenizer = AutoTokenizer.from_pretrained(smollm2_path)
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=6,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=256,
        query_pre_attn_scalar=256,
        sliding_window=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(7)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.normal_(0, 0.3)  # non-zero norm weights, so the +1 offset matters
    folder = root / "gemma3"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_gemma3_export_stores_norms_with_the_offset_and_loads_back(smollm2_path: Path, tmp_path: Path) -> None:
    import gguf

    folder = _gemma3_folder(tmp_path, smollm2_path)
    out = tmp_path / "gemma.gguf"
    assert export_gguf(str(folder), out, quant="f16").architecture == "gemma3_text"

    reader = gguf.GGUFReader(out)
    stored = next(t for t in reader.tensors if t.name == "blk.0.attn_norm.weight").data
    from safetensors.numpy import load_file

    hf = load_file(folder / "model.safetensors")["model.layers.0.input_layernorm.weight"]
    np.testing.assert_allclose(stored, hf + 1.0, atol=1e-6)  # llama.cpp multiplies by the stored weight
    rows = [r[:6] for r in TOKENS]  # past the 4-token sliding window too
    exported = _logits(_load_gguf(out), [*rows, TOKENS[0]])
    rounded = _logits(_with_weights(folder, lambda w: w.astype(np.float16).astype(np.float32)), [*rows, TOKENS[0]])
    np.testing.assert_allclose(exported, rounded, atol=1e-3, rtol=0)


# --- errors: one line, exit 2 --------------------------------------------------------------------------------


def test_unsupported_architecture_names_it_and_what_is_supported(tiny_models: dict[str, Path], tmp_path: Path) -> None:
    result = aloe("export", "gguf", str(tiny_models["qwen2"]), "--out", str(tmp_path / "q.gguf"))
    assert_one_line_error(result, "Qwen2ForCausalLM", "LlamaForCausalLM", "Gemma3ForCausalLM")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_bad_quant_missing_model_and_existing_output(tiny_llama: Path, exported_llama: Path, tmp_path: Path) -> None:
    assert_one_line_error(
        aloe("export", "gguf", str(tiny_llama), "--out", str(tmp_path / "x.gguf"), "--quant", "q3"),
        "q3",
        "f16, bf16, q8_0, q4_k_m",
    )
    assert_one_line_error(
        aloe("export", "gguf", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.gguf")), "nowhere"
    )
    assert_one_line_error(
        aloe("export", "gguf", str(tiny_llama), "--out", str(exported_llama)), str(exported_llama), "--force"
    )


def test_a_folder_without_tokenizer_says_to_save_one(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        shutil.copy(tiny_llama / name, folder / name)
    with pytest.raises(UserError, match="tokeni"):
        export_gguf(str(folder), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_q4_k_m_without_llama_cpp_says_how_to_install(tiny_llama: Path, tmp_path: Path) -> None:
    env = without_module("llama_cpp", tmp_path / "env")
    out = tmp_path / "out"
    out.mkdir()
    result = aloe("export", "gguf", str(tiny_llama), "--out", str(out / "x.gguf"), "--quant", "q4_k_m", env=env)
    assert_one_line_error(result, "llama-cpp-python", "pip install 'aloekit[llamacpp]'")
    assert not list(out.iterdir())


def test_q4_k_m_uses_llama_cpps_quantizer(tiny_llama: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    import gguf

    out = tmp_path / "tiny-q4.gguf"
    export_gguf(str(tiny_llama), out, quant="q4_k_m", threads=1)

    kinds = {t.tensor_type.name for t in gguf.GGUFReader(out).tensors}
    # Every matrix quantized by llama.cpp (rows of 64 are too short for k-quant blocks of 256, so it falls back
    # to Q5_0 / Q8_0 for them, as it does for such tensors in real models); norms stay f32.
    assert "F16" not in kinds and kinds & {"Q4_K", "Q5_0", "Q6_K", "Q8_0"}
    exported = _logits(_load_gguf(out), TOKENS)
    original = _logits(_load(tiny_llama), TOKENS)
    assert np.corrcoef(exported.ravel(), original.ravel())[0, 1] > 0.95
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind
