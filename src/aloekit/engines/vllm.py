"""The vLLM backend: GPU only, imported only when asked for.

Prompts are tokenized by :class:`~aloekit.engines.tokens.PromptEncoder`, exactly as the hf backend does, and
handed to vLLM as token ids, so both backends score and generate from the same tokens. Shared contexts (the
options of one question) are reused through vLLM's prefix caching rather than by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aloekit.engines.base import (
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    PromptLogprobs,
    truncate_at_stop,
)
from aloekit.engines.tokens import PromptEncoder
from aloekit.errors import UserError


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise UserError(
            "the vllm backend needs vLLM and a CUDA GPU: `pip install 'aloekit[vllm]'` on a GPU machine, "
            "or use --backend hf"
        ) from e
    return vllm


class VLLMEngine:
    name = "vllm"

    def __init__(self, llm: Any, *, model_id: str, model_type: str, seed: int = 0, add_bos: bool | None = None) -> None:
        self.llm = llm
        self.model_id = model_id
        self.seed = seed
        self.tokenizer = llm.get_tokenizer()
        self.encoder = PromptEncoder(self.tokenizer, model_id=model_id, model_type=model_type, add_bos=add_bos)
        start = self.tokenizer.bos_token_id
        self._fallback_start = int(start if start is not None else self.tokenizer.eos_token_id)

    @classmethod
    def from_reference(
        cls,
        ref: str,
        *,
        dtype: str = "auto",
        seed: int = 0,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        tensor_parallel_size: int = 1,
        add_bos: bool | None = None,
        **_: Any,
    ) -> VLLMEngine:
        vllm = _import_vllm()
        import torch

        if not torch.cuda.is_available():
            raise UserError("the vllm backend needs a CUDA GPU and torch sees none; use --backend hf on this machine")
        from aloekit import models

        resolved = models.resolve(
            ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, revision=revision
        )
        llm = vllm.LLM(
            model=str(resolved.path),
            dtype=dtype,
            seed=seed,
            trust_remote_code=trust_remote_code,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            tensor_parallel_size=tensor_parallel_size,
            enable_prefix_caching=True,
        )
        model_type = str(getattr(llm.llm_engine.model_config.hf_config, "model_type", ""))
        return cls(llm, model_id=str(ref), model_type=model_type, seed=seed, add_bos=add_bos)

    def _run(self, token_lists: list[list[int]], params: list[Any], progress: bool) -> list[Any]:
        vllm = _import_vllm()
        prompts = [vllm.inputs.TokensPrompt(prompt_token_ids=ids) for ids in token_lists]
        return list(self.llm.generate(prompts, sampling_params=params, use_tqdm=progress))

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        vllm = _import_vllm()
        token_lists = [self.encoder.prompt_ids(r) for r in requests]
        params = [
            vllm.SamplingParams(
                n=r.n,
                temperature=r.temperature,
                top_p=r.top_p,
                max_tokens=max(r.max_tokens, 1),
                stop=list(r.stop) or None,
                seed=None if r.greedy else (self.seed if r.seed is None else r.seed),
            )
            for r in requests
        ]
        outputs = self._run(token_lists, params, progress)
        results: list[Generation] = []
        for req, ids, out in zip(requests, token_lists, outputs, strict=True):
            if req.max_tokens == 0:
                results.append(Generation([""] * req.n, ["length"] * req.n, len(ids), [0] * req.n))
                continue
            texts, reasons, counts = [], [], []
            for sample in out.outputs:
                text, _ = truncate_at_stop(sample.text, req.stop)
                texts.append(text)
                reasons.append("stop" if sample.finish_reason == "stop" else "length")
                counts.append(len(sample.token_ids))
            results.append(Generation(texts, reasons, len(ids), counts))  # type: ignore[arg-type]
        return results

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        vllm = _import_vllm()
        pairs = [
            self.encoder.encode_pair(r.context, r.continuation, fallback_start=self._fallback_start) for r in requests
        ]
        # max_tokens=1 because vLLM must generate something; prompt_logprobs=1 returns each prompt token's
        # log-probability together with its rank (rank 1 = the argmax, i.e. greedy).
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self._run([ctx + cont for ctx, cont in pairs], [params] * len(pairs), progress)
        results = []
        for (ctx, cont), out in zip(pairs, outputs, strict=True):
            total, greedy = 0.0, True
            for pos, token in enumerate(cont, start=len(ctx)):
                entry = out.prompt_logprobs[pos][token]
                total += float(entry.logprob)
                greedy = greedy and entry.rank == 1
            results.append(Loglikelihood(logprob=total, is_greedy=greedy, n_tokens=len(cont)))
        return results

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        vllm = _import_vllm()
        params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=max(top, 1))
        encoded = [self.tokenizer(p, add_special_tokens=False, return_offsets_mapping=True) for p in prompts]
        outputs = self._run([list(e["input_ids"]) for e in encoded], [params] * len(prompts), False)
        results = []
        for enc, out in zip(encoded, outputs, strict=True):
            ids = list(enc["input_ids"])
            lps: list[float | None] = [None]
            tops: list[dict[str, float] | None] = [None]
            for pos in range(1, len(ids)):
                entries = out.prompt_logprobs[pos]
                lps.append(float(entries[ids[pos]].logprob))
                ranked = sorted(entries.items(), key=lambda kv: kv[1].rank or 0)[: max(top, 1)]
                tops.append({self.tokenizer.decode([t]): float(e.logprob) for t, e in ranked})
            pieces = [self.tokenizer.decode([t]) for t in ids]
            results.append(PromptLogprobs(pieces, [int(s) for s, _ in enc["offset_mapping"]], lps, tops))
        return results

    def close(self) -> None:
        # vLLM holds GPU memory until its engine is deleted.
        del self.llm
