"""Export a transformers model folder to one GGUF file, for llama.cpp, Ollama and LM Studio.

The file follows the conventions of llama.cpp's own converter (``convert_hf_to_gguf.py``), so llama.cpp reads
it as it reads its own:

* tensor names from ``gguf.TensorNameMap`` (``model.layers.0.self_attn.q_proj.weight`` -> ``blk.0.attn_q.weight``);
* LLaMA's query and key rows regrouped for llama.cpp's rotary embedding, which rotates adjacent pairs of a
  head's dimensions where transformers rotates its two halves (:func:`permute_for_rope`);
* Gemma 3's RMSNorm weights stored as ``1 + w`` (llama.cpp multiplies by the stored weight; transformers by
  ``1 + w``), and its embedding cut to the tokenizer's size;
* norms kept in f32, matrices in f16, bf16 or quantized to Q8_0 with ``gguf.quants``; Q4_K_M needs llama.cpp's own
  quantizer (:mod:`aloekit.export.quantize`).

Tensors are streamed: each is read from the safetensors shards, converted and written before the next, so the
export needs about one tensor of extra memory, not the model's size. The file is written to a temporary sibling
and renamed into place; an Ollama ``Modelfile`` is written next to it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np

from aloekit.errors import UserError
from aloekit.io import atomic_path, atomic_write_text, read_json_object, temporary_sibling

QUANTS = ("f16", "bf16", "q8_0", "q4_k_m")

_FILE_TYPES = {
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    # bf16 keeps the exact weights a bf16 model runs with (fp32 rounded to nearest even, as torch does), and
    # llama.cpp runs it with AVX512-BF16 where the CPU has it: measured here ~1.7x f16 for log-likelihoods.
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    modelfile: Path
    architecture: str
    quant: str
    tensors: int
    template_translated: bool
    """False when the chat template is not one the Modelfile writer knows; Ollama then reads the GGUF's own."""


# --- architectures -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Architecture:
    arch: gguf.MODEL_ARCH
    hparams: Callable[[gguf.GGUFWriter, Any], None]
    tensor: Callable[[str, np.ndarray, Any, int], np.ndarray]
    """(hf name, float32 array, config, tokenizer size) -> the array llama.cpp expects."""
    pad_vocab: bool
    """LLaMA: pad the token list to the embedding's rows; Gemma 3: cut the embedding to the token list."""


def permute_for_rope(weight: np.ndarray, n_heads: int) -> np.ndarray:
    """Reorder a query/key projection's output rows from transformers' rotary layout to llama.cpp's.

    Within each head transformers pairs dimension ``i`` with ``i + d/2`` (rotate-half); llama.cpp pairs ``2i``
    with ``2i + 1``. Taking the two halves of each head and interleaving them maps one onto the other."""
    rows = weight.shape[0]
    half = rows // n_heads // 2
    return weight.reshape(n_heads, 2, half, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _rope_theta(config: Any, layer_kind: str | None = None) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    if layer_kind is not None and layer_kind in params:
        params = params[layer_kind]
    theta = params.get("rope_theta", getattr(config, "rope_theta", None))
    if theta is None:
        raise UserError("config.json gives no rope_theta: add it (the model's rotary base) and export again")
    kind = params.get("rope_type", "default")
    if kind not in ("default", None):
        raise UserError(
            f"config.json uses rope scaling '{kind}', which aloe export gguf does not write yet; export a model "
            "without rope scaling, or convert with llama.cpp's convert_hf_to_gguf.py"
        )
    return float(theta)


def _head_dim(config: Any) -> int:
    return int(getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)


def _shared_hparams(writer: gguf.GGUFWriter, config: Any) -> None:
    """The sizes every supported architecture writes the same way."""
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(int(config.num_attention_heads))
    writer.add_head_count_kv(int(config.num_key_value_heads))


def _llama_hparams(writer: gguf.GGUFWriter, config: Any) -> None:
    head_dim = _head_dim(config)
    _shared_hparams(writer, config)
    writer.add_rope_freq_base(_rope_theta(config))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(int(config.vocab_size))


def _llama_tensor(name: str, data: np.ndarray, config: Any, n_tokens: int) -> np.ndarray:
    if name.endswith("q_proj.weight"):
        return permute_for_rope(data, int(config.num_attention_heads))
    if name.endswith("k_proj.weight"):
        return permute_for_rope(data, int(config.num_key_value_heads))
    return data


def _gemma3_hparams(writer: gguf.GGUFWriter, config: Any) -> None:
    head_dim = _head_dim(config)
    # llama.cpp scales queries by 1/sqrt(head_dim) (1/sqrt(hidden/heads) for the 27B model only) and cannot be
    # told another scale; a model trained with another one would silently compute different attention.
    scalar = getattr(config, "query_pre_attn_scalar", head_dim)
    if scalar not in (head_dim, config.hidden_size // config.num_attention_heads):
        raise UserError(
            f"config.json has query_pre_attn_scalar {scalar} but head_dim {head_dim}: llama.cpp assumes they are "
            "equal, so the exported model would compute different attention"
        )
    layer_types = list(getattr(config, "layer_types", None) or [])
    # llama.cpp's Gemma 3 has five sliding-window layers, then one global, repeated; the file cannot say otherwise.
    expected = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(len(layer_types))]
    if layer_types and layer_types != expected:
        raise UserError(
            "config.json's layer_types is not Gemma 3's pattern (five sliding-window layers, then one global), "
            "which llama.cpp assumes; this model cannot be exported faithfully"
        )
    if _rope_theta(config, "sliding_attention") != 10_000.0:
        raise UserError("Gemma 3's sliding-window layers must use rope_theta 10000 (llama.cpp assumes it)")
    _shared_hparams(writer, config)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(_rope_theta(config, "full_attention"))
    if getattr(config, "final_logit_softcapping", None):
        writer.add_final_logit_softcapping(float(config.final_logit_softcapping))
    if getattr(config, "sliding_window", None):
        writer.add_sliding_window(int(config.sliding_window))


def _gemma3_tensor(name: str, data: np.ndarray, config: Any, n_tokens: int) -> np.ndarray:
    if name.endswith("embed_tokens.weight"):
        return data[:n_tokens]  # rows past the tokenizer are never looked up; llama.cpp expects them gone
    if name.endswith("norm.weight"):
        return data + 1.0
    return data


ARCHITECTURES: dict[str, _Architecture] = {
    "llama": _Architecture(gguf.MODEL_ARCH.LLAMA, _llama_hparams, _llama_tensor, pad_vocab=True),
    "gemma3_text": _Architecture(gguf.MODEL_ARCH.GEMMA3, _gemma3_hparams, _gemma3_tensor, pad_vocab=False),
}
SUPPORTED = "LlamaForCausalLM (Llama, SmolLM2) and Gemma3ForCausalLM (Gemma 3 text)"


def architecture_of(folder: Path) -> tuple[str, _Architecture]:
    config = read_json_object(folder / "config.json", "restore or regenerate the model's config")
    model_type = str(config.get("model_type", ""))
    if model_type == "gemma3":
        raise UserError(
            f"{folder} is a multimodal Gemma 3 (Gemma3ForConditionalGeneration); aloe export gguf writes text "
            "models only: export its language model (Gemma3ForCausalLM)"
        )
    if model_type not in ARCHITECTURES:
        names = ", ".join(config.get("architectures") or []) or model_type or "unknown"
        raise UserError(f"cannot export {names} (model_type '{model_type}') to GGUF: supported are {SUPPORTED}")
    return model_type, ARCHITECTURES[model_type]


# --- tensors -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Planned:
    source: str
    name: str
    shape: tuple[int, ...]
    qtype: gguf.GGMLQuantizationType


def _shards(folder: Path) -> list[Path]:
    shards = sorted(folder.glob("*.safetensors"))
    if not shards:
        raise UserError(f"{folder} has no .safetensors weights: save the model with safe_serialization=True")
    return shards


@contextlib.contextmanager
def _open_shards(folder: Path) -> Iterator[dict[str, Any]]:
    """name -> open safetensors handle holding it, for every tensor of the folder."""
    from safetensors import safe_open

    with contextlib.ExitStack() as stack:
        where: dict[str, Any] = {}
        for shard in _shards(folder):
            handle = stack.enter_context(safe_open(str(shard), framework="pt"))
            for key in handle.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                where[key] = handle
        yield where


def _qtype(name: str, shape: tuple[int, ...], quant: str) -> gguf.GGMLQuantizationType:
    if len(shape) <= 1 or name.endswith("_norm.weight"):
        return gguf.GGMLQuantizationType.F32  # norms are tiny and precision-sensitive; llama.cpp keeps them f32
    if quant == "bf16":
        return gguf.GGMLQuantizationType.BF16
    if quant == "q8_0" and shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16  # rows that do not fill Q8_0 blocks stay f16, as in llama.cpp


def _plan(
    where: dict[str, Any], config: Any, arch: _Architecture, n_tokens: int, quant: str, folder: Path
) -> list[_Planned]:
    names = gguf.get_tensor_name_map(arch.arch, int(config.num_hidden_layers))
    tied = bool(getattr(config, "tie_word_embeddings", False))
    planned: list[_Planned] = []
    for source in where:
        if source == "lm_head.weight" and tied:
            continue  # llama.cpp reuses token_embd when output.weight is absent
        name = names.get_name(source, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(
                f"{folder}: tensor '{source}' has no GGUF name for {arch.arch.name}; the folder holds weights this "
                "architecture does not have (an adapter? save a merged model) or is not a plain "
                f"{SUPPORTED.split(' (')[0]}"
            )
        shape = tuple(int(d) for d in where[source].get_slice(source).get_shape())
        if source.endswith("embed_tokens.weight") and not arch.pad_vocab:
            shape = (min(shape[0], n_tokens), *shape[1:])
        planned.append(_Planned(source, name, shape, _qtype(name, shape, quant)))
    return planned


def _encode(data: np.ndarray, qtype: gguf.GGMLQuantizationType) -> np.ndarray:
    if qtype == gguf.GGMLQuantizationType.F32:
        return data.astype(np.float32)
    if qtype == gguf.GGMLQuantizationType.F16:
        return data.astype(np.float16)
    return gguf.quants.quantize(data.astype(np.float32), qtype)


def _nbytes(planned: _Planned) -> tuple[np.dtype[Any], tuple[int, ...], int]:
    """(dtype, shape, bytes) of the tensor as stored: quantized tensors are rows of bytes."""
    dtype: np.dtype[Any]
    if planned.qtype == gguf.GGMLQuantizationType.F32:
        dtype, shape = np.dtype(np.float32), planned.shape
    elif planned.qtype == gguf.GGMLQuantizationType.F16:
        dtype, shape = np.dtype(np.float16), planned.shape
    else:
        dtype, shape = np.dtype(np.uint8), gguf.quant_shape_to_byte_shape(planned.shape, planned.qtype)
    return dtype, shape, int(np.prod(shape)) * dtype.itemsize


# --- the export ----------------------------------------------------------------------------------------------


def export_gguf(
    ref: str,
    out: Path,
    *,
    quant: str = "f16",
    force: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    threads: int | None = None,
) -> ExportResult:
    """Write the model ``ref`` (a folder, Hub id or alias; see :func:`aloekit.models.resolve`) to ``out``."""
    from aloekit import models
    from aloekit.export.modelfile import modelfile_text

    if quant not in QUANTS:
        raise UserError(f"--quant {quant}: choose one of {', '.join(QUANTS)}")
    if out.suffix != ".gguf":
        raise UserError(f"--out {out}: the file name must end in .gguf")
    modelfile = out.with_name("Modelfile")
    for target in (out, modelfile):
        if target.exists() and not force:
            raise UserError(f"{target} already exists: pass --force to replace it, or choose another --out")
    if quant == "q4_k_m":
        from aloekit.export.quantize import require_quantizer

        require_quantizer()  # before the slow part: fail at once when llama.cpp is missing
    resolved = models.resolve(ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code)
    folder = resolved.path
    model_type, arch = architecture_of(folder)

    from transformers import AutoConfig, AutoTokenizer

    from aloekit.export.gguf_vocab import read_vocabulary

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise UserError(f"{folder}: cannot load the tokenizer ({e}); save it next to the weights") from e
    vocab = read_vocabulary(
        folder, tokenizer, int(config.vocab_size), pad_to=int(config.vocab_size) if arch.pad_vocab else None
    )

    # Temporary siblings, renamed into place: a killed export never leaves a file that looks finished.
    name = Path(ref).name or ref
    with atomic_path(out) as tmp:
        if quant == "q4_k_m":  # f16 first, into a second temporary the quantizer reads
            from aloekit.export.quantize import quantize_q4_k_m

            with temporary_sibling(out) as f16:
                count = _write(f16, folder, config, arch, vocab, "f16", name=name)
                quantize_q4_k_m(f16, tmp, threads=threads)
        else:
            count = _write(tmp, folder, config, arch, vocab, quant, name=name)
    text, translated = modelfile_text(out.name, vocab.chat_template, tokenizer)
    atomic_write_text(modelfile, text)
    return ExportResult(out, modelfile, model_type, quant, count, translated)


def _write(path: Path, folder: Path, config: Any, arch: _Architecture, vocab: Any, quant: str, *, name: str) -> int:
    import torch

    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[arch.arch])
    try:
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(name)
        arch.hparams(writer, config)
        writer.add_file_type(_FILE_TYPES[quant])
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        vocab.write(writer)
        with _open_shards(folder) as where:
            planned = _plan(where, config, arch, len(vocab.tokens), quant, folder)
            for item in planned:
                dtype, shape, nbytes = _nbytes(item)
                writer.add_tensor_info(item.name, shape, dtype, nbytes, raw_dtype=item.qtype)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for item in planned:
                tensor = where[item.source].get_tensor(item.source).to(torch.float32).numpy()
                data = arch.tensor(item.source, tensor, config, len(vocab.tokens))
                writer.write_tensor_data(_encode(data, item.qtype))
        return len(planned)
    finally:
        writer.close()


def cached_export(resolved: Any, quant: str = "f16") -> Path:
    """A GGUF of the resolved model folder, exported once into the cache (keyed by the weights' and tokenizer's
    content hash) and reused, for engines that run GGUF files."""
    from aloekit import models

    target = models.aloe_home() / "models" / f"gguf-export-{models.fingerprint(resolved)[:20]}-{quant}" / "model.gguf"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with models.file_lock(target.parent.with_name(target.parent.name + ".lock")):
        if not target.is_file():  # another process may have finished it while we waited
            export_gguf(str(resolved.path), target, quant=quant, force=True)
    return target
