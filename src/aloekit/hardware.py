"""What this machine computes natively: a leaf module, so training and the engines can both ask without importing
each other."""

from __future__ import annotations

from pathlib import Path

__all__ = ["cpu_supports_bf16"]


def cpu_supports_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (AVX512-BF16 or AMX-BF16), where bf16 autocast is a speed-up.

    Without it, torch emulates bf16 on a CPU and autocast is slower than fp32, so it is refused rather than
    quietly slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags
