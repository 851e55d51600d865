"""Engines: one protocol (:class:`~aloekit.engines.base.Engine`), four backends.

``hf`` runs transformers on CPU or GPU, ``vllm`` runs vLLM on a GPU and ``llamacpp`` runs llama.cpp on a CPU
(both imported only when asked for), and ``openai`` talks to any OpenAI-compatible server (vLLM, llama.cpp,
``aloe serve``, a hosted teacher).
"""

from __future__ import annotations

from typing import Any

from aloekit.engines.base import (
    Engine,
    Generation,
    GenerationRequest,
    Loglikelihood,
    LoglikelihoodRequest,
    PromptLogprobs,
)
from aloekit.errors import UserError

BACKENDS = ("hf", "vllm", "llamacpp", "openai")

__all__ = [
    "BACKENDS",
    "Engine",
    "Generation",
    "GenerationRequest",
    "Loglikelihood",
    "LoglikelihoodRequest",
    "PromptLogprobs",
    "load_engine",
]


def load_engine(backend: str, model: str | None, **options: Any) -> Engine:
    """Build an engine by backend name.

    ``model`` is a model reference for ``hf``/``vllm``/``llamacpp`` (see :func:`aloekit.models.resolve`) and the served
    model's name for ``openai`` (None asks the server which model it serves). ``options`` go to the backend's
    constructor (e.g. ``base_url``/``api_key`` for ``openai``, ``device``/``batch_size`` for ``hf``, ``threads`` for
    ``llamacpp``).
    """
    if backend == "hf":
        from aloekit.engines.hf import HFEngine

        if model is None:
            raise UserError("the hf backend needs --model")
        return HFEngine.from_reference(model, **options)
    if backend == "vllm":
        from aloekit.engines.vllm import VLLMEngine

        if model is None:
            raise UserError("the vllm backend needs --model")
        return VLLMEngine.from_reference(model, **options)
    if backend == "llamacpp":
        from aloekit.engines.llamacpp import LlamaCppEngine

        if model is None:
            raise UserError("the llamacpp backend needs --model")
        return LlamaCppEngine.from_reference(model, **options)
    if backend == "openai":
        from aloekit.engines.openai import OpenAIEngine

        return OpenAIEngine(model=model, **options)
    raise UserError(f"unknown backend '{backend}': choose one of {', '.join(BACKENDS)}")
