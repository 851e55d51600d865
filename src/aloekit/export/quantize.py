"""Q4_K_M through llama.cpp's own quantizer (llama-cpp-python), the one format ``gguf.quants`` cannot write.

llama.cpp's k-quant mixes choose a type per tensor (some attention and feed-forward tensors get Q6_K) with
importance heuristics that live only in its C++ code, so we call it rather than reimplement it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Any

from aloekit.errors import UserError

INSTALL = "pip install 'aloekit[llamacpp]' (it builds llama.cpp from source, about 10 minutes)"


def require_quantizer() -> Any:
    """The ``llama_cpp`` module, or a UserError saying how to install it."""
    try:
        import llama_cpp
    except ImportError as e:
        raise UserError(
            f"--quant q4_k_m uses llama.cpp's quantizer, from llama-cpp-python, which is not installed: {INSTALL}; "
            "or export --quant f16 / q8_0, which need nothing else"
        ) from e
    return llama_cpp


def quantize_q4_k_m(source: Path, target: Path, *, threads: int | None = None) -> None:
    """Quantize the GGUF ``source`` (f16) to Q4_K_M at ``target`` (a different path)."""
    llama_cpp = require_quantizer()
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
    params.nthread = threads or len(os.sched_getaffinity(0))
    status = llama_cpp.llama_model_quantize(str(source).encode(), str(target).encode(), ctypes.byref(params))
    if status != 0:
        raise UserError(f"llama.cpp could not quantize {source} to Q4_K_M (status {status}); export f16 instead")
