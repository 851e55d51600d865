"""The transformers backend: CPU or GPU, batched, length-sorted, deterministic given a seed.

Two ideas make it fast where lm-eval's generic plumbing is slow on a CPU:

* Log-likelihood requests are grouped by their (tokenized) context. Each context is run through the model once,
  with its KV cache kept; the cache is then replicated per continuation and only the continuation tokens are
  run. When every continuation is a single token (MCQA letters), the second pass is skipped altogether: one
  forward per question.
* Requests are sorted by length before batching, so padding (wasted compute) is small, and the first batch is
  the longest, so an out-of-memory error shows up at once rather than at the end.

Tokenization (shared with the vllm backend) lives in :mod:`aloekit.engines.tokens`; how requests are grouped and
batched in :mod:`aloekit.engines.hf_batching`; loading details (dtype, end-of-sequence ids, the fp32 output head)
in :mod:`aloekit.engines.hf_model`.
"""

from __future__ import annotations

import copy
from collections import OrderedDict, defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from aloekit.engines.base import (
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    PromptLogprobs,
    truncate_at_stop,
)
from aloekit.engines.hf_batching import (
    _CONTINUATIONS_PER_CONTEXT_SLOT,
    _batches_of_groups,
    _common_prefix,
    _Group,
    _left_padded,
    _prefix_batches,
    _shared_prefix,
)
from aloekit.engines.hf_model import _dtype, _eos_ids, _has_sliding_window, _output_head_in_fp32, bf16_blocks
from aloekit.engines.tokens import PromptEncoder
from aloekit.errors import UserError
from aloekit.progress import progress_bar

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


class HFEngine:
    """Engine over a transformers causal LM already in memory (see :meth:`from_reference` to load one)."""

    name = "hf"

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        model_id: str,
        batch_size: int = 8,
        seed: int = 0,
        add_bos: bool | None = None,
        max_length: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        _output_head_in_fp32(self.model)
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.batch_size = batch_size
        self.seed = seed
        self.encoder = PromptEncoder(
            tokenizer, model_id=model_id, model_type=str(getattr(model.config, "model_type", "")), add_bos=add_bos
        )
        if tokenizer.pad_token_id is None:
            # Padding is always masked out, so any id works; eos is what most chat models use.
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_id = int(tokenizer.pad_token_id)
        cfg_max = getattr(model.config, "max_position_embeddings", None) or getattr(
            getattr(model.config, "text_config", None), "max_position_embeddings", None
        )
        self.max_length = int(max_length or cfg_max or 4096)
        self.eos_ids = _eos_ids(model, tokenizer)
        # Sliding-window layers measure distance in cache slots; padding between a shared prefix and a question
        # would shift their window, so those models keep the plain path (left padding only).
        self.prefix_sharing = not _has_sliding_window(model.config)

    @classmethod
    def from_reference(
        cls,
        ref: str,
        *,
        device: str | None = None,
        dtype: str = "auto",
        batch_size: int = 8,
        seed: int = 0,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        add_bos: bool | None = None,
    ) -> HFEngine:
        """Resolve ``ref`` (alias, folder, .gguf, Hub id) and load it on ``device`` (default: cuda if present)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from aloekit import models

        resolved = models.resolve(
            ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, revision=revision
        )
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError(f"--device {device} asked for, but torch sees no CUDA GPU; use --device cpu")
        torch_dtype = _dtype(dtype, device)
        has_safetensors = any(resolved.path.glob("*.safetensors"))
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            resolved.path,
            dtype=torch_dtype,
            trust_remote_code=trust_remote_code,
            use_safetensors=has_safetensors,
        ).to(device)  # type: ignore[arg-type]  # transformers types PreTrainedModel.to as an unbound wrapped method
        return cls(model, tokenizer, model_id=str(ref), batch_size=batch_size, seed=seed, add_bos=add_bos)

    def bf16_copy(self) -> HFEngine:
        """This engine over a copy of its float32 model whose attention and MLP blocks compute in bf16
        (:func:`bf16_blocks`): the fast half of checked scoring (:mod:`aloekit.evaluation.checked`)."""
        import torch

        from aloekit.hardware import cpu_supports_bf16

        if self.model.dtype != torch.float32:
            raise UserError(
                f"scoring checked-bf16 copies a float32 model to bf16, but this one is {self.model.dtype}; "
                "load it with --dtype float32 or use scoring exact"
            )
        if self.device.type == "cpu" and not cpu_supports_bf16():
            raise UserError(
                "scoring checked-bf16: this CPU has no native bf16 (AVX512-BF16 or AMX), where bf16 is slower "
                "than float32; use scoring exact"
            )
        # Copy the modules, not the weights: every float32 tensor is shared (read-only here), so the copy costs only
        # the bf16 weights of its attention and MLP blocks, not a second float32 model.
        shared = {id(t): t for t in (*self.model.parameters(), *self.model.buffers())}
        fast = bf16_blocks(copy.deepcopy(self.model, shared))
        twin = HFEngine(fast, self.tokenizer, model_id=self.model_id, batch_size=self.batch_size, seed=self.seed)
        twin.encoder, twin.max_length = self.encoder, self.max_length  # the same prompts, token for token
        return twin

    @property
    def device(self) -> torch.device:
        return self.model.device

    # --- tokenization ----------------------------------------------------------------------------------------

    def prompt_ids(self, request: GenerationRequest) -> list[int]:
        return self.encoder.prompt_ids(request)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        bos = self.tokenizer.bos_token_id
        return self.encoder.encode_pair(
            context, continuation, fallback_start=int(bos if bos is not None else self.eos_ids[0])
        )

    # --- log-likelihood --------------------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        import torch

        groups: dict[tuple[int, ...], _Group] = {}
        for i, req in enumerate(requests):
            ctx, cont = self.encode_pair(req.context, req.continuation)
            if len(ctx) + len(cont) > self.max_length:
                raise UserError(
                    f"log-likelihood request {i} is {len(ctx) + len(cont)} tokens, more than the model's "
                    f"{self.max_length}; shorten the prompt (fewer few-shot examples) or use a longer-context model"
                )
            key = tuple(ctx)
            groups.setdefault(key, _Group(key, [])).members.append((i, tuple(cont)))
        # Split very wide groups so one continuation pass stays within memory; each split re-runs its context.
        width = self.batch_size * _CONTINUATIONS_PER_CONTEXT_SLOT
        work: list[_Group] = []
        for g in groups.values():
            work += [_Group(g.context, g.members[k : k + width]) for k in range(0, len(g.members), width)]
        work.sort(key=lambda g: -(len(g.context) + max(len(c) for _, c in g.members)))

        results: list[Loglikelihood | None] = [None] * len(requests)
        batches = list(_batches_of_groups(work, self.batch_size, width))
        prefixes = _PrefixCaches()
        with torch.inference_mode(), progress_bar(progress, len(requests), "log-likelihood") as advance:
            for batch in batches:
                for index, value in self._score_batch(batch, prefixes):
                    results[index] = value
                advance(sum(len(g.members) for g in batch))
        return [r for r in results if r is not None]

    def _score_batch(self, batch: list[_Group], prefixes: _PrefixCaches) -> Iterator[tuple[int, Loglikelihood]]:
        import torch

        dev = self.device
        contexts = [list(g.context) for g in batch]
        needs_second_pass = any(len(cont) > 1 for g in batch for _, cont in g.members)
        # Few-shot prompts repeat the same examples before every question: run that common prefix once and
        # give every row a copy of its keys/values, instead of recomputing it per question as lm-eval does.
        shared = _shared_prefix(contexts) if len(batch) > 1 and self.prefix_sharing else 0
        cache = None
        if shared:
            key = tuple(contexts[0][:shared])
            if key not in prefixes:
                # Batches of one call mostly share the same prefix (an MMLU subject's header, the few-shot block):
                # run it once per call, not once per batch. Same shape, same tokens: the same keys and values.
                prefix = torch.tensor([key], device=dev)
                prefixes[key] = self.model(input_ids=prefix, use_cache=True, logits_to_keep=1).cache
            cache = copy.deepcopy(prefixes[key])  # reorder_cache below replaces the copy's tensors, not the kept ones
            cache.reorder_cache(torch.zeros(len(batch), dtype=torch.long, device=dev))
        suffixes = [c[shared:] for c in contexts]
        ctx_len = max(len(c) for c in suffixes)
        ids = torch.full((len(batch), ctx_len), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), ctx_len), dtype=torch.long)
        for row, c in enumerate(suffixes):  # left padding: every context ends at the same column
            ids[row, ctx_len - len(c) :] = torch.tensor(c)
            mask[row, ctx_len - len(c) :] = 1
        ids, mask = ids.to(dev), mask.to(dev)
        positions = shared + (mask.cumsum(-1) - 1).clamp(min=0)
        # The attention mask covers the shared prefix too; padding sits between prefix and suffix, masked out.
        mask = torch.cat([torch.ones((len(batch), shared), dtype=torch.long, device=dev), mask], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=cache,
            use_cache=needs_second_pass,
            logits_to_keep=1,  # only the last position predicts a continuation's first token
        )
        first = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

        # One row per continuation; row r belongs to context group_of[r].
        rows = [(g_idx, index, cont) for g_idx, g in enumerate(batch) for index, cont in g.members]
        first_tokens = torch.tensor([cont[0] for _, _, cont in rows], device=dev)
        group_of = torch.tensor([g for g, _, _ in rows], device=dev)
        first_lp = first[group_of, first_tokens]
        first_greedy = first[group_of].argmax(-1) == first_tokens

        rest_lp = torch.zeros(len(rows), device=dev)
        rest_greedy = torch.ones(len(rows), dtype=torch.bool, device=dev)
        if needs_second_pass:
            cache = out.cache  # transformers 5 renamed past_key_values to cache
            cache.reorder_cache(group_of)  # replicate each context's keys/values once per continuation
            width = max(len(cont) for _, _, cont in rows) - 1
            inp = torch.full((len(rows), max(width, 1)), self.pad_id, dtype=torch.long)
            cont_mask = torch.zeros_like(inp)
            for r, (_, _, cont) in enumerate(rows):
                if len(cont) > 1:  # input: all but the last token; targets: all but the first
                    inp[r, : len(cont) - 1] = torch.tensor(cont[:-1])
                    cont_mask[r, : len(cont) - 1] = 1
            inp, cont_mask = inp.to(dev), cont_mask.to(dev)
            full_mask = torch.cat([mask[group_of], cont_mask], dim=1)
            ctx_positions = mask.sum(-1)[group_of].unsqueeze(1)
            pos = ctx_positions + torch.arange(inp.shape[1], device=dev).unsqueeze(0)
            logits = self.model(
                input_ids=inp, attention_mask=full_mask, position_ids=pos, cache=cache, use_cache=False
            ).logits
            lp = torch.log_softmax(logits.float(), dim=-1)
            for r, (_, _, cont) in enumerate(rows):
                if len(cont) > 1:
                    target = torch.tensor(cont[1:], device=dev)
                    step = lp[r, : len(cont) - 1]
                    rest_lp[r] = step.gather(-1, target.unsqueeze(-1)).sum()
                    rest_greedy[r] = bool((step.argmax(-1) == target).all())
        total = (first_lp + rest_lp).tolist()
        greedy = (first_greedy & rest_greedy).tolist()
        for r, (_, index, cont) in enumerate(rows):
            yield index, Loglikelihood(logprob=float(total[r]), is_greedy=bool(greedy[r]), n_tokens=len(cont))

    # --- prompt log-probabilities (OpenAI echo) --------------------------------------------------------------

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        import torch

        results: list[PromptLogprobs] = []
        with torch.inference_mode():
            for prompt in prompts:  # one at a time: full-vocabulary logits for every position are large
                enc = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
                prefix = self.encoder.prefix()
                ids = prefix + list(enc["input_ids"])
                offsets = [0] * len(prefix) + [int(s) for s, _ in enc["offset_mapping"]]
                if not ids:
                    results.append(PromptLogprobs([], [], [], []))
                    continue
                if len(ids) > self.max_length:
                    raise UserError(f"prompt is {len(ids)} tokens, more than the model's {self.max_length}")
                logits = self.model(input_ids=torch.tensor([ids], device=self.device)).logits[0]
                lp = torch.log_softmax(logits.float(), dim=-1)
                token_lp: list[float | None] = [None]
                tops: list[dict[str, float] | None] = [None]
                for pos in range(1, len(ids)):
                    token_lp.append(float(lp[pos - 1, ids[pos]]))
                    values, indices = lp[pos - 1].topk(max(top, 1))
                    tops.append({self._piece(int(t)): float(v) for v, t in zip(values, indices, strict=True)})
                results.append(PromptLogprobs([self._piece(t) for t in ids], offsets, token_lp, tops))
        return results

    def _piece(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    # --- generation ------------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        import torch

        encoded = [self.prompt_ids(r) for r in requests]
        for i, (req, ids) in enumerate(zip(requests, encoded, strict=True)):
            if len(ids) + req.max_tokens > self.max_length:
                raise UserError(
                    f"request {i}: {len(ids)} prompt tokens + max_tokens {req.max_tokens} exceed the model's "
                    f"{self.max_length}; shorten the prompt or lower max_tokens"
                )
        # Requests with the same decoding settings can share a generate() call; sort each set by length.
        by_settings: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            seed = None if r.greedy else (self.seed if r.seed is None else r.seed)
            by_settings[(r.max_tokens, r.temperature, r.top_p, r.n, r.stop, seed)].append(i)
        results: list[Generation | None] = [None] * len(requests)
        with torch.inference_mode(), progress_bar(progress, len(requests), "generate") as advance:
            for (max_tokens, temperature, top_p, n, stop, seed), members in by_settings.items():
                if self.prefix_sharing and n == 1 and max_tokens > 0:
                    batches = _prefix_batches(members, encoded, self.batch_size)
                else:
                    members.sort(key=lambda i: -len(encoded[i]))
                    size = self.batch_size
                    batches = [[[i] for i in members[s : s + size]] for s in range(0, len(members), size)]
                for chunk_no, batch in enumerate(batches):
                    if seed is not None:
                        # Seeded per chunk: the same requests in the same order always sample the same tokens.
                        torch.manual_seed(seed * 1_000_003 + chunk_no)
                    chunk = [i for cluster in batch for i in cluster]
                    clusters = [[encoded[i] for i in cluster] for cluster in batch]
                    outs = self._generate_chunk(clusters, max_tokens, temperature, top_p, n, stop)
                    for i, gen in zip(chunk, outs, strict=True):
                        results[i] = gen
                    advance(len(chunk))
        return [r for r in results if r is not None]

    def _generate_chunk(
        self,
        clusters: list[list[list[int]]],
        max_tokens: int,
        temperature: float,
        top_p: float,
        n: int,
        stop: tuple[str, ...],
    ) -> list[Generation]:
        """Generate for the prompts of ``clusters`` (flattened, in order). Prompts in one cluster share a prefix;
        when some cluster has several prompts, each cluster's prefix is run once and its keys/values copied to
        its rows (an ensemble's runs repeat the same few-shot examples before differently ordered options)."""
        from transformers import GenerationConfig

        prompts = [p for cluster in clusters for p in cluster]
        if max_tokens == 0:
            return [Generation([""] * n, ["length"] * n, len(p), [0] * n) for p in prompts]
        cache = None
        if any(len(cluster) > 1 for cluster in clusters):
            ids, mask, cache = self._shared_prefixes(clusters)
        else:
            ids, mask = _left_padded(prompts, self.pad_id)
        width = ids.shape[1]
        sampled = temperature > 0
        # A fresh config: the model's own generation_config may turn sampling on (or set top_k) behind our back.
        config = GenerationConfig(
            max_new_tokens=max_tokens,
            do_sample=sampled,
            temperature=temperature if sampled else None,
            top_p=top_p if sampled else None,
            top_k=None,
            num_return_sequences=n,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            stop_strings=list(stop) or None,
        )
        out = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=config,
            tokenizer=self.tokenizer if stop else None,
            **({"cache": cache} if cache is not None else {}),
        )
        new = out[:, width:].tolist()
        eos = set(self.eos_ids)
        gens: list[Generation] = []
        for row, p in enumerate(prompts):
            texts: list[str] = []
            reasons: list[str] = []
            counts: list[int] = []
            for sample in new[row * n : (row + 1) * n]:
                cut = next((k for k, t in enumerate(sample) if t in eos), None)
                tokens = sample if cut is None else sample[:cut]
                decoded = cast(str, self.tokenizer.decode(tokens, skip_special_tokens=True))  # ids in: one text out
                text, hit_stop = truncate_at_stop(decoded, stop)
                texts.append(text)
                reasons.append("stop" if cut is not None or hit_stop else "length")
                counts.append(len(tokens) + (1 if cut is not None else 0))
            gens.append(Generation(texts, reasons, len(p), counts))  # type: ignore[arg-type]
        return gens

    def _shared_prefixes(self, clusters: list[list[list[int]]]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Input ids, attention mask and a filled cache for prompts laid out ``[pad | prefix | pad | suffix]``.

        One forward runs every cluster's prefix (left-padded to the longest); its keys/values are copied to each
        row of the cluster. generate() then runs only the suffix block: positions come from the attention mask,
        so the padding between prefix and suffix shifts nothing (checked against the plain path in the tests)."""
        import torch

        dev = self.device
        # Each prompt keeps at least one token of its own: generation starts from the last prompt token's logits.
        shared = [_common_prefix(cluster) if len(cluster) > 1 else len(cluster[0]) - 1 for cluster in clusters]
        prefix, prefix_mask = _left_padded(
            [cluster[0][:k] for cluster, k in zip(clusters, shared, strict=True)], self.pad_id
        )
        positions = (prefix_mask.cumsum(-1) - 1).clamp(min=0)
        out = self.model(
            input_ids=prefix.to(dev),
            attention_mask=prefix_mask.to(dev),
            position_ids=positions.to(dev),
            use_cache=True,
            logits_to_keep=1,
        )
        owner = torch.tensor([c for c, cluster in enumerate(clusters) for _ in cluster], dtype=torch.long)
        cache = out.cache  # transformers 5 renamed past_key_values to cache
        cache.reorder_cache(owner.to(dev))  # one copy of its cluster's prefix per row
        suffix, suffix_mask = _left_padded(
            [p[k:] for cluster, k in zip(clusters, shared, strict=True) for p in cluster], self.pad_id
        )
        ids = torch.cat([prefix[owner], suffix], dim=1)
        mask = torch.cat([prefix_mask[owner], suffix_mask], dim=1)
        return ids, mask, cache

    def close(self) -> None:
        """Nothing to release beyond memory, which Python frees with the engine."""


class _PrefixCaches(OrderedDict[tuple[int, ...], Any]):
    """The keys/values of the shared prompt prefixes one log-likelihood call has run, newest last, at most
    :attr:`KEEP` (a few-shot prefix of 600 tokens is about 27 MB for SmolLM2-135M)."""

    KEEP = 8

    def __setitem__(self, key: tuple[int, ...], value: Any) -> None:
        super().__setitem__(key, value)
        while len(self) > self.KEEP:
            self.popitem(last=False)
