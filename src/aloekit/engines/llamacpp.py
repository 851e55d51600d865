"""The llama.cpp backend (llama-cpp-python): a GGUF model on the CPU, imported only when asked for.

Prompts are tokenized by :class:`~aloekit.engines.tokens.PromptEncoder` with the same transformers tokenizer the
hf engine uses, and handed to llama.cpp as token ids, so both engines score and generate from the same tokens;
llama.cpp only runs the model. A model folder or Hub id is exported to GGUF once (f16 by default, cached); an
alias or a ``.gguf`` file runs as it is.

Log-likelihood is computed through llama.cpp's low-level batch API rather than its completion API, which
would recompute every context and return logits for every position:

* requests are grouped by context, and contexts sorted by their tokens, so consecutive contexts share long
  prefixes (few-shot examples); the KV cache keeps the prefix the next context shares and only the rest is run;
* a context is run with logits for its last position only; each continuation (all but its last token) is then
  run on top of the context's cache, with logits at its own positions, and removed from the cache again. A
  continuation attends to its context and itself only, so the result is exact, as in the hf engine.

Generation runs one prompt at a time through ``Llama.generate`` (llama.cpp's sampler chain, reduced to plain
temperature and top-p), reusing the cache for a prompt's shared prefix with the previous one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
from aloekit.progress import progress_bar

INSTALL = "pip install 'aloekit[llamacpp]' (llama-cpp-python builds llama.cpp from source: about 10 minutes)"
DEFAULT_CONTEXT = 4096


def import_llama_cpp() -> Any:
    try:
        import llama_cpp
    except ImportError as e:
        raise UserError(f"the llamacpp backend needs llama-cpp-python, which is not installed: {INSTALL}") from e
    return llama_cpp


def machine_threads() -> int:
    """CPUs this process may run on (a container's or taskset's limit, not the host's count)."""
    return len(os.sched_getaffinity(0))


class LlamaCppEngine:
    name = "llamacpp"

    def __init__(
        self,
        llm: Any,
        tokenizer: Any,
        *,
        model_id: str,
        model_type: str,
        eos_ids: Sequence[int],
        seed: int = 0,
        add_bos: bool | None = None,
    ) -> None:
        self.lib = import_llama_cpp()
        self.llm = llm
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.seed = seed
        self.encoder = PromptEncoder(tokenizer, model_id=model_id, model_type=model_type, add_bos=add_bos)
        self.eos_ids = set(int(i) for i in eos_ids)
        self.n_ctx = int(llm.n_ctx())
        self.n_batch = int(llm.n_batch)
        self.n_vocab = int(llm.n_vocab())
        self._vocab = self.lib.llama_model_get_vocab(llm.model)
        self._cached: list[int] = []  # tokens whose keys/values sit in the cache (sequence 0), in order
        bos = tokenizer.bos_token_id
        self._fallback_start = int(bos if bos is not None else next(iter(self.eos_ids)))

    @classmethod
    def from_reference(
        cls,
        ref: str,
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
        quant: str = "f16",
        seed: int = 0,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        add_bos: bool | None = None,
        **_: Any,
    ) -> LlamaCppEngine:
        """Load ``ref``: a ``.gguf`` file or alias as is; a folder or Hub id exported to GGUF (``quant``) once.

        ``threads`` defaults to every CPU this process may use; ``n_ctx`` to the model's trained context, at
        most 4096 (the KV cache is allocated for all of it)."""
        lib = import_llama_cpp()
        from transformers import AutoTokenizer, GenerationConfig

        from aloekit import models

        if threads is not None and threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        resolved = models.resolve(
            ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, revision=revision
        )
        gguf_file = models.gguf_source(ref)
        if gguf_file is None:
            from aloekit.export.gguf import cached_export

            gguf_file = cached_export(resolved, quant)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
        eos_ids = _eos_ids(resolved.path, tokenizer, GenerationConfig)
        n_threads = threads or machine_threads()
        trained = _trained_context(gguf_file)
        llm = lib.Llama(
            model_path=str(gguf_file),
            n_ctx=n_ctx or min(trained or DEFAULT_CONTEXT, DEFAULT_CONTEXT),
            n_threads=n_threads,
            n_threads_batch=n_threads,
            seed=seed,
            verbose=False,
        )
        model_type = str(llm.metadata.get("general.architecture", ""))
        return cls(
            llm, tokenizer, model_id=str(ref), model_type=model_type, eos_ids=eos_ids, seed=seed, add_bos=add_bos
        )

    # --- the cache and the batch API -------------------------------------------------------------------------

    def _forget_from(self, position: int) -> None:
        """Drop cached keys/values from ``position`` on (a partial removal can fail, e.g. on a sliding-window
        cache; then the whole cache is cleared)."""
        memory = self.lib.llama_get_memory(self.llm.ctx)
        if position <= 0 or not self.lib.llama_memory_seq_rm(memory, 0, position, -1):
            self.lib.llama_memory_clear(memory, True)
            position = 0
        del self._cached[position:]

    def _decode(self, tokens: Sequence[int], *, logits: str) -> np.ndarray:
        """Run ``tokens`` after the cached ones; return log-probabilities of the next token at the last position
        (``logits='last'``) or at every position (``'all'``)."""
        lib = self.lib
        if len(self._cached) + len(tokens) > self.n_ctx:
            raise UserError(
                f"{len(self._cached) + len(tokens)} tokens do not fit the llamacpp context of {self.n_ctx}; raise "
                "n_ctx or shorten the prompt"
            )
        rows: list[np.ndarray] = []
        for start in range(0, len(tokens), self.n_batch):
            chunk = list(tokens[start : start + self.n_batch])
            last_chunk = start + self.n_batch >= len(tokens)
            batch = lib.llama_batch_init(len(chunk), 0, 1)
            try:
                batch.n_tokens = len(chunk)
                for i, token in enumerate(chunk):
                    batch.token[i] = int(token)
                    batch.pos[i] = len(self._cached) + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = logits == "all" or (last_chunk and i == len(chunk) - 1)
                status = lib.llama_decode(self.llm.ctx, batch)
                if status != 0:
                    raise RuntimeError(f"llama_decode returned {status}")
                self._cached.extend(int(t) for t in chunk)
                wanted = range(len(chunk)) if logits == "all" else ([len(chunk) - 1] if last_chunk else [])
                for i in wanted:
                    row = np.ctypeslib.as_array(lib.llama_get_logits_ith(self.llm.ctx, i), shape=(self.n_vocab,))
                    rows.append(row.astype(np.float64))
            finally:
                lib.llama_batch_free(batch)
        out = np.stack(rows)
        out -= out.max(axis=-1, keepdims=True)
        out -= np.log(np.exp(out).sum(axis=-1, keepdims=True))
        return out

    def _run_context(self, context: Sequence[int]) -> np.ndarray:
        """Log-probabilities after ``context``, reusing the cached prefix it shares with the previous one."""
        shared = 0
        for a, b in zip(self._cached, context, strict=False):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(context) - 1)  # the last token must run again: its logits are needed
        self._forget_from(shared)
        return self._decode(context[len(self._cached) :], logits="last")[-1]

    # --- log-likelihood --------------------------------------------------------------------------------------

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        groups: dict[tuple[int, ...], list[tuple[int, list[int]]]] = {}
        for i, req in enumerate(requests):
            ctx, cont = self.encoder.encode_pair(req.context, req.continuation, fallback_start=self._fallback_start)
            if len(ctx) + len(cont) > self.n_ctx:
                raise UserError(
                    f"log-likelihood request {i} is {len(ctx) + len(cont)} tokens, more than the llamacpp context "
                    f"of {self.n_ctx}; shorten the prompt or raise n_ctx"
                )
            groups.setdefault(tuple(ctx), []).append((i, cont))
        results: list[Loglikelihood | None] = [None] * len(requests)
        self.llm.reset()
        with progress_bar(progress, len(requests), "log-likelihood") as advance:
            for context in sorted(groups):  # sorted token lists: shared prefixes sit next to each other
                first = self._run_context(context)
                for index, cont in groups[context]:
                    steps = first[None, :]
                    if len(cont) > 1:
                        steps = np.concatenate([steps, self._decode(cont[:-1], logits="all")])
                        self._forget_from(len(context))
                    picked = steps[np.arange(len(cont)), cont]
                    greedy = bool((steps.argmax(-1) == np.array(cont)).all())
                    results[index] = Loglikelihood(float(picked.sum()), greedy, len(cont))
                advance(len(groups[context]))
        self._forget_from(0)
        return [r for r in results if r is not None]

    # --- prompt log-probabilities (OpenAI echo) --------------------------------------------------------------

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        results: list[PromptLogprobs] = []
        self.llm.reset()
        for prompt in prompts:
            enc = self.tokenizer(prompt, add_special_tokens=False, return_offsets_mapping=True)
            prefix = self.encoder.prefix()
            ids = prefix + list(enc["input_ids"])
            offsets = [0] * len(prefix) + [int(s) for s, _ in enc["offset_mapping"]]
            if not ids:
                results.append(PromptLogprobs([], [], [], []))
                continue
            self._forget_from(0)
            lp = self._decode(ids, logits="all")
            token_lp: list[float | None] = [None]
            tops: list[dict[str, float] | None] = [None]
            for pos in range(1, len(ids)):
                token_lp.append(float(lp[pos - 1, ids[pos]]))
                best = np.argsort(-lp[pos - 1])[: max(top, 1)]
                tops.append({self._piece(int(t)): float(lp[pos - 1, t]) for t in best})
            results.append(PromptLogprobs([self._piece(t) for t in ids], offsets, token_lp, tops))
        self._forget_from(0)
        return results

    def _piece(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    # --- generation ------------------------------------------------------------------------------------------

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        encoded = [self.encoder.prompt_ids(r) for r in requests]
        for i, (req, ids) in enumerate(zip(requests, encoded, strict=True)):
            if len(ids) + req.max_tokens > self.n_ctx:
                raise UserError(
                    f"request {i}: {len(ids)} prompt tokens + max_tokens {req.max_tokens} exceed the llamacpp "
                    f"context of {self.n_ctx}; shorten the prompt, lower max_tokens or raise n_ctx"
                )
        # Our batch-API bookkeeping and Llama.generate's are separate: start generate() from an empty cache.
        self._forget_from(0)
        self.llm.reset()
        results: list[Generation] = []
        with progress_bar(progress, len(requests), "generate") as advance:
            for req, ids in zip(requests, encoded, strict=True):
                samples = [self._sample(req, ids, k) for k in range(1 if req.greedy else req.n)]
                if req.greedy:  # greedy decoding gives the same text every time: n copies of one run
                    samples *= req.n
                texts, reasons, counts = (list(x) for x in zip(*samples, strict=True))
                results.append(Generation(texts, reasons, len(ids), counts))
                advance(1)
        self.llm.reset()
        return results

    def _sample(self, req: GenerationRequest, prompt: list[int], k: int) -> tuple[str, str, int]:
        if req.max_tokens == 0:
            return "", "length", 0
        seed = self.seed if req.seed is None else req.seed
        # One seed per (request seed, sample): the same request samples the same texts in any batch or order.
        self.llm.set_seed((seed * 1_000_003 + k) % 2**32)
        tokens: list[int] = []
        for token in self.llm.generate(
            prompt,
            temp=req.temperature,
            top_p=req.top_p,
            top_k=0,  # llama.cpp's defaults (top_k 40, min_p 0.05) would change the distribution; turn them off
            min_p=0.0,
            typical_p=1.0,
            repeat_penalty=1.0,
        ):
            if int(token) in self.eos_ids or self.lib.llama_vocab_is_eog(self._vocab, int(token)):
                text = self.tokenizer.decode(tokens, skip_special_tokens=True)
                return truncate_at_stop(text, req.stop)[0], "stop", len(tokens) + 1
            tokens.append(int(token))
            text = self.tokenizer.decode(tokens, skip_special_tokens=True)
            cut, hit = truncate_at_stop(text, req.stop)
            if hit:
                return cut, "stop", len(tokens)
            if len(tokens) >= req.max_tokens:
                return text, "length", len(tokens)
        return self.tokenizer.decode(tokens, skip_special_tokens=True), "length", len(tokens)

    def close(self) -> None:
        self.llm.close()


def _trained_context(path: Path) -> int | None:
    """The context length the GGUF's header states (the reader memory-maps the file; no weights are read)."""
    import gguf

    fields = gguf.GGUFReader(path).fields
    arch = fields["general.architecture"].contents()
    field = fields.get(f"{arch}.context_length")
    return int(field.contents()) if field is not None else None


def _eos_ids(folder: Path, tokenizer: Any, generation_config: Any) -> list[int]:
    """End-of-generation ids as the hf engine counts them: the generation config's, plus the tokenizer's."""
    ids: list[int] = []
    try:
        configured = generation_config.from_pretrained(folder).eos_token_id
    except OSError:  # no generation_config.json
        configured = None
    for value in configured if isinstance(configured, list) else [configured]:
        if value is not None and int(value) not in ids:
            ids.append(int(value))
    if tokenizer.eos_token_id is not None and int(tokenizer.eos_token_id) not in ids:
        ids.append(int(tokenizer.eos_token_id))
    if not ids:
        raise UserError(f"{folder} defines no end-of-sequence token; set eos_token_id in generation_config.json")
    return ids
