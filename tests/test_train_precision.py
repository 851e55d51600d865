"""Training precision on a CPU: bf16 autocast only where the CPU computes bf16 natively, chosen by 'fast'."""

from __future__ import annotations

import pytest

from aloekit.errors import UserError
from aloekit.train import common


def test_fast_is_bf16_autocast_on_a_cpu_with_native_bf16_and_fp32_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "device_kind", lambda: "cpu")
    monkeypatch.setattr(common, "cpu_supports_bf16", lambda: True)
    assert common.precision_args("fast") == {"bf16": True, "fp16": False, "use_cpu": True}
    assert common.precision_args("auto")["bf16"] is False  # auto keeps fp32 on a CPU: bf16 is opt-in there
    monkeypatch.setattr(common, "cpu_supports_bf16", lambda: False)
    assert common.precision_args("fast") == {"bf16": False, "fp16": False, "use_cpu": True}


def test_bf16_on_a_cpu_without_native_bf16_and_fp16_on_any_cpu_are_refused_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(common, "device_kind", lambda: "cpu")
    monkeypatch.setattr(common, "cpu_supports_bf16", lambda: False)
    with pytest.raises(UserError, match=r"AVX512-BF16 or AMX.*use precision: fp32"):
        common.precision_args("bf16")
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        common.precision_args("fp16")


def test_dpo_full_fine_tuning_keeps_fp32_master_weights_under_bf16_autocast() -> None:
    from aloekit.train.dpo_trainer import policy_dtype

    assert policy_dtype("bf16", lora=False) == "float32"  # bf16-held weights would round small updates away
    assert policy_dtype("bf16", lora=True) == "bfloat16"  # frozen base under LoRA adapters
    assert policy_dtype("fp32", lora=True) == "float32"
