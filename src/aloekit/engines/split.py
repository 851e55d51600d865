"""One model on two engines: log-likelihoods from one, generations from the other.

Why: on a CPU the two kinds of work favour different engines. Scoring is one long forward pass per question,
where transformers in bf16 is as fast as llama.cpp (measured here: 1,061 vs 897 prompt tokens/s); generation is
hundreds of one-token steps, where llama.cpp's many sequences at once are 2-4x transformers (bench/RESULTS.md,
engine). A recipe's evaluation can so score with ``hf`` and generate with ``llamacpp`` on the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence

from aloekit.engines.base import (
    Engine,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    PromptLogprobs,
)


class SplitEngine:
    """The :class:`~aloekit.engines.base.Engine` protocol over ``scorer`` (log-likelihoods, prompt log-probs)
    and ``generator`` (generation); closing it closes both."""

    def __init__(self, scorer: Engine, generator: Engine) -> None:
        self.scorer, self.generator = scorer, generator
        self.name = f"{scorer.name}+{generator.name}"
        self.model_id = scorer.model_id

    def generate(self, requests: Sequence[GenerationRequest], *, progress: bool = False) -> list[Generation]:
        return self.generator.generate(requests, progress=progress)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *, progress: bool = False) -> list[Loglikelihood]:
        return self.scorer.loglikelihood(requests, progress=progress)

    def prompt_logprobs(self, prompts: Sequence[str], *, top: int = 1) -> list[PromptLogprobs]:
        return self.scorer.prompt_logprobs(prompts, top=top)

    def close(self) -> None:
        try:
            self.generator.close()
        finally:
            self.scorer.close()
