"""Specification of the report's charts (aloekit.report.charts): PNG bytes drawn from results as stages write them."""

from __future__ import annotations

import io

from aloekit.report.charts import attack_success_by_style, benchmarks_by_stage


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG"
        return image.size


def eval_results(acc: float) -> dict:
    return {"benchmarks": {b: {"acc": acc, "acc_ci95": [acc - 0.05, acc + 0.05]} for b in ("pubmedqa", "medqa")}}


def test_benchmarks_by_stage_draws_one_bar_per_stage_and_benchmark() -> None:
    one = benchmarks_by_stage({"base": eval_results(0.4)})
    five = benchmarks_by_stage({s: eval_results(0.5) for s in ("base", "sft", "merged", "dpo1", "dpo2")})
    width, height = png_size(five)
    assert width > 500 and height > png_size(one)[1]  # more stages, a taller chart


def test_attack_success_by_style_accepts_models_with_different_suites() -> None:
    rate = {"rate": 0.2, "ci95": [0.1, 0.35], "n": 25}
    before = {"suites": {"advbench": {"by_style": {"plain": rate, "role_play": rate}}}}
    after = {"suites": {"advbench": {"by_style": {"plain": rate}}, "xstest": {}}}
    assert png_size(attack_success_by_style({"before DPO": before, "after DPO": after}))[0] > 500
