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

Generation decodes many sequences at once in a second context (continuous batching: one token per running
sequence per llama_decode call, a finished sequence's slot taken by the next prompt at once); measured on
SmolLM2-135M here, 32 sequences give ~3.5x the tokens/s of one. Tokens are picked on our side from the logits
(:func:`next_token`: argmax, or temperature and top-p with one seeded random stream per request and sample), so
a request's text does not depend on the batch it ran in.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aloekit.engines.base import (
    FinishReason,
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
_QUANT_OF_DTYPE = {"auto": "f16", "float16": "f16", "bfloat16": "bf16"}
# Key/value slots of the generation context, all sequences together: long prompts get fewer sequences at once
# rather than a cache of gigabytes (an 8B model's cache holds ~128 KB per token).
_GENERATION_TOKENS = 65_536


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
        parallel: int = 16,
    ) -> None:
        if parallel < 1:
            raise UserError(f"batch_size must be >= 1, got {parallel}")
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
        self.parallel = min(parallel, int(self.lib.llama_max_parallel_sequences()))
        self.threads = int(llm.n_threads)
        self._gen_ctx: Any = None  # generation's own context, several sequences (see _parallel_context)
        self._gen_seq = 0
        self._gen_batch = 0
        self._gen_parallel = 0
        bos = tokenizer.bos_token_id
        self._fallback_start = int(bos if bos is not None else next(iter(self.eos_ids)))

    @classmethod
    def from_reference(
        cls,
        ref: str,
        *,
        threads: int | None = None,
        n_ctx: int | None = None,
        quant: str | None = None,
        dtype: str = "auto",
        batch_size: int = 16,
        seed: int = 0,
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        add_bos: bool | None = None,
        **_: Any,
    ) -> LlamaCppEngine:
        """Load ``ref``: a folder or Hub id exported to GGUF once, as ``quant`` or in the weights' ``dtype``
        (bfloat16: bf16; auto and float16: f16); a ``.gguf`` file or alias runs as it is unless ``quant`` or a
        dtype other than auto asks for a type: then its weights are exported too, so a model compared with models
        exported from folders (a recipe's base beside its fine-tuned stages) runs with the same kernels.

        ``threads`` defaults to every CPU this process may use; ``n_ctx`` to the model's trained context, at
        most 4096 (the KV cache is allocated for all of it); ``batch_size`` is how many sequences generation
        decodes at once."""
        lib = import_llama_cpp()
        from transformers import AutoTokenizer, GenerationConfig

        from aloekit import models

        if threads is not None and threads < 1:
            raise UserError(f"threads must be >= 1, got {threads}")
        as_is = quant is None and dtype == "auto"
        if quant is None:
            if dtype not in _QUANT_OF_DTYPE:
                raise UserError(
                    f"the llamacpp backend runs f16 or bf16 weights, not dtype {dtype}: choose auto, float16 or "
                    "bfloat16"
                )
            quant = _QUANT_OF_DTYPE[dtype]
        resolved = models.resolve(
            ref, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, revision=revision
        )
        gguf_file = models.gguf_source(ref) if as_is else None
        if gguf_file is None:
            from aloekit.export.gguf import cached_export

            gguf_file = cached_export(resolved, quant)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
        eos_ids = _eos_ids(resolved.path, tokenizer, GenerationConfig)
        n_threads = threads or machine_threads()
        trained = _trained_context(gguf_file)
        # No extra buffer types (weights repacked for other kernels: AMX on Intel CPUs that have it). With them,
        # llama.cpp's AMX matrix product segfaulted inside llama_decode on the first batch of a safety suite's
        # prompts, every time, with the embedded model's Q4_1 GGUF (a Xeon with amx_int8, llama-cpp-python
        # 0.3.36; bf16 weights took the same 84-96 s for 64 replies with them or without). A crash kills a run
        # hours in; a repack is at most a speed-up.
        with _model_params(lib, extra_buffers=False):
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
            llm,
            tokenizer,
            model_id=str(ref),
            model_type=model_type,
            eos_ids=eos_ids,
            seed=seed,
            add_bos=add_bos,
            parallel=batch_size,
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
        # One row per sample to draw; greedy decoding gives the same text every time, so one row stands for n.
        rows = [
            _Row(i, k, encoded[i], req, np.random.default_rng([self.seed if req.seed is None else req.seed, k]))
            for i, req in enumerate(requests)
            for k in range(1 if req.greedy else req.n)
        ]
        finished: dict[tuple[int, int], tuple[str, FinishReason, int]] = {
            (r.index, r.sample): ("", "length", 0) for r in rows if r.request.max_tokens == 0
        }
        decoding = [r for r in rows if r.request.max_tokens > 0]
        with progress_bar(progress, len(decoding), "generate (samples)") as advance:
            for row in self._decode_rows(decoding):
                finished[row.index, row.sample] = row.result()
                advance(1)
            results: list[Generation] = []
            for i, req in enumerate(requests):
                drawn = [finished[i, k] for k in range(1 if req.greedy else req.n)]
                texts, reasons, counts = (list(x) for x in zip(*drawn, strict=True))
                if req.greedy:
                    texts, reasons, counts = texts * req.n, reasons * req.n, counts * req.n
                results.append(Generation(texts, reasons, len(encoded[i]), counts))
        return results

    def _parallel_context(self, per_sequence: int) -> Any:
        """A second llama.cpp context for generation, with ``parallel`` sequences (fewer when they would hold more
        than ``_GENERATION_TOKENS`` tokens together) of ``per_sequence`` tokens each (rounded up; rebuilt only
        when a longer one is needed). Each sequence gets its own key/value buffer
        (``kv_unified`` off): with one shared buffer every token attends over all sequences' slots, and 32
        sequences decoded slower than 16 (measured: 184 vs 264 tokens/s; 323 with separate buffers)."""
        lib = self.lib
        per_sequence = -(-per_sequence // 256) * 256
        slots = max(1, min(self.parallel, _GENERATION_TOKENS // per_sequence))
        if self._gen_ctx is not None and self._gen_seq >= per_sequence and self._gen_parallel == slots:
            return self._gen_ctx
        self._free_parallel()
        params = lib.llama_context_default_params()
        params.n_ctx = slots * per_sequence
        params.n_batch = max(2048, per_sequence)  # one decode call admits at least one whole prompt
        params.n_ubatch = 512
        params.n_seq_max = slots
        params.kv_unified = False
        params.n_threads = params.n_threads_batch = self.threads
        ctx = lib.llama_init_from_model(self.llm.model, params)
        if not ctx:
            raise UserError(
                f"llama.cpp could not make a context for {slots} sequences of {per_sequence} tokens; lower batch_size"
            )
        self._gen_ctx, self._gen_seq, self._gen_batch = ctx, per_sequence, int(params.n_batch)
        self._gen_parallel = slots
        return ctx

    def _free_parallel(self) -> None:
        if self._gen_ctx is not None:
            self.lib.llama_free(self._gen_ctx)
            self._gen_ctx, self._gen_seq = None, 0

    def _decode_rows(self, rows: list[_Row]) -> Iterator[_Row]:
        """Continuous batching: up to ``parallel`` rows decode together, one token each per llama_decode call;
        a finished row's sequence slot is cleared and the next waiting row's prompt joins the very next call, so
        short replies (refusals, single letters) never hold a slot idle until the longest reply ends. Rows are
        yielded as they finish. A row's tokens depend only on its own prompt and seed, not on its neighbours."""
        if not rows:
            return
        lib = self.lib
        ctx = self._parallel_context(max(len(r.prompt) + r.request.max_tokens for r in rows))
        memory = lib.llama_get_memory(ctx)
        lib.llama_memory_clear(memory, True)
        waiting = sorted(rows, key=lambda r: len(r.prompt))  # pop() takes the longest prompt first
        free = list(range(self._gen_parallel))[::-1]
        running: dict[int, _Row] = {}  # slot -> row
        batch = lib.llama_batch_init(self._gen_batch, 0, 1)
        try:
            while waiting or running:
                # (token, position, slot, logits wanted): each running slot's last token, then new prompts.
                entries = [
                    (row.tokens[-1], len(row.prompt) + len(row.tokens) - 1, slot, True) for slot, row in running.items()
                ]
                while waiting and free and len(entries) + len(waiting[-1].prompt) <= self._gen_batch:
                    row, slot = waiting.pop(), free.pop()
                    lib.llama_memory_seq_rm(memory, slot, -1, -1)
                    last = len(row.prompt) - 1
                    entries += [(int(token), pos, slot, pos == last) for pos, token in enumerate(row.prompt)]
                    running[slot] = row
                # In slot order: llama.cpp splits a batch whose sequences come out of order into many small
                # steps (measured: 290 ms instead of 52 ms a step once finished slots were reused out of order).
                entries.sort(key=lambda e: (e[2], e[1]))
                at: dict[int, int] = {}  # slot -> batch index whose logits sample the slot's next token
                for n, (token, pos, slot, want) in enumerate(entries):
                    batch.token[n], batch.pos[n], batch.n_seq_id[n] = token, pos, 1
                    batch.seq_id[n][0], batch.logits[n] = slot, want
                    if want:
                        at[slot] = n
                batch.n_tokens = len(entries)
                status = lib.llama_decode(ctx, batch)
                if status != 0:
                    raise RuntimeError(f"llama_decode returned {status}")
                for slot, index in at.items():
                    row = running[slot]
                    logits = np.ctypeslib.as_array(lib.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
                    token = next_token(logits, row.request, row.rng)
                    if row.add(token, self._is_end(token), self.tokenizer):
                        del running[slot]
                        free.append(slot)
                        yield row
        finally:
            lib.llama_batch_free(batch)

    def _is_end(self, token: int) -> bool:
        return token in self.eos_ids or bool(self.lib.llama_vocab_is_eog(self._vocab, token))

    def close(self) -> None:
        self._free_parallel()
        self.llm.close()


@dataclass
class _Row:
    """One sample being generated: its request, prompt, random stream and the tokens drawn so far."""

    index: int  # the request's position
    sample: int
    prompt: list[int]
    request: GenerationRequest
    rng: np.random.Generator
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    reason: FinishReason = "length"
    count: int = 0

    def add(self, token: int, end: bool, tokenizer: Any) -> bool:
        """Take the next token; True when the sample is finished (end of sequence, a stop string, max_tokens).
        The counts follow the hf engine: an end-of-sequence token counts, a stop string's tokens do not."""
        if end:
            self.text = truncate_at_stop(tokenizer.decode(self.tokens, skip_special_tokens=True), self.request.stop)[0]
            self.reason, self.count = "stop", len(self.tokens) + 1
            return True
        self.tokens.append(token)
        text = tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut, hit = truncate_at_stop(text, self.request.stop)
        if hit:
            self.text, self.reason, self.count = cut, "stop", len(self.tokens)
            return True
        if len(self.tokens) >= self.request.max_tokens:
            self.text, self.reason, self.count = text, "length", len(self.tokens)
            return True
        return False

    def result(self) -> tuple[str, FinishReason, int]:
        return self.text, self.reason, self.count


def next_token(logits: np.ndarray, request: GenerationRequest, rng: np.random.Generator) -> int:
    """The next token from one position's logits: the argmax for greedy decoding, else a draw at the request's
    temperature from the smallest set of tokens whose probability reaches top_p (nucleus sampling)."""
    if request.greedy:
        return int(np.argmax(logits))
    z = logits.astype(np.float64) / request.temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if request.top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        keep = order[: int(np.searchsorted(np.cumsum(p[order]), request.top_p)) + 1]
        return int(rng.choice(keep, p=p[keep] / p[keep].sum()))
    return int(rng.choice(len(p), p=p))


def _trained_context(path: Path) -> int | None:
    """The context length the GGUF's header states (the reader memory-maps the file; no weights are read)."""
    import gguf

    fields = gguf.GGUFReader(path).fields
    arch = fields["general.architecture"].contents()
    field = fields.get(f"{arch}.context_length")
    return int(field.contents()) if field is not None else None


@contextlib.contextmanager
def _model_params(lib: Any, *, extra_buffers: bool) -> Iterator[None]:
    """``Llama()`` takes its model parameters from ``llama_model_default_params()`` and has no argument for
    ``use_extra_bufts``; for the load only, the defaults it reads say whether to use them."""
    module = lib.llama_cpp
    defaults = module.llama_model_default_params

    def chosen() -> Any:
        params = defaults()
        params.use_extra_bufts = extra_buffers
        return params

    module.llama_model_default_params = chosen
    try:
        yield
    finally:
        module.llama_model_default_params = defaults


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
