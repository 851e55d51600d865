"""Merge methods: parity with mergekit 0.1.5 itself, DARE statistics, and edge-case specifications.

Parity tests run mergekit in its own venv (``.venv-mergekit``, created by ``make install``) through
``tests/mergekit_ref.py``: every case is batched into ONE subprocess call per session. Without that venv they are
skipped; the statistical and specification tests need only aloekit.
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from aloekit.errors import UserError
from aloekit.merge.methods import METHODS, dare_drop, merge_tensor, sign_consensus_mask

ROOT = Path(__file__).resolve().parents[1]
MERGEKIT_PYTHON = ROOT / ".venv-mergekit" / "bin" / "python"
REF_SCRIPT = Path(__file__).resolve().parent / "mergekit_ref.py"
TOLERANCE = 1e-6
SHAPES = [(37,), (16, 24), (3, 5, 4)]

needs_mergekit = pytest.mark.skipif(
    not MERGEKIT_PYTHON.exists(),
    reason=f"mergekit 0.1.5 reference venv missing ({MERGEKIT_PYTHON}); `make install` creates it",
)


# --- parity cases ---------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One merge described once, handed both to aloekit and (as a YAML-like dict) to mergekit."""

    id: str
    method: str
    models: list[tuple[str, torch.Tensor, dict[str, Any]]]  # (name, tensor, per-model parameters)
    base: tuple[str, torch.Tensor] | None = None  # name equal to a models name: listed there too
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    expect_error: bool = False  # mergekit fails and aloekit raises UserError

    def reference(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "models": [{"name": n, "tensor": t, "parameters": p} for n, t, p in self.models],
            "base": {"name": self.base[0], "tensor": self.base[1]} if self.base else None,
            "parameters": self.params,
            "seed": self.seed,
        }

    def ours(self) -> torch.Tensor:
        """Resolve per-model parameters the way the plan layer does (own, then merge-level) and merge."""
        base_index = None
        if self.base is not None:
            names = [n for n, _, _ in self.models]
            base_index = names.index(self.base[0]) if self.base[0] in names else None
        models = [(t, {**self.params, **p}) for _, t, p in self.models]
        generator = torch.Generator().manual_seed(self.seed) if self.seed is not None else None
        return merge_tensor(
            self.method,
            models=models,
            base=self.base[1] if self.base else None,
            base_index=base_index,
            params=self.params,
            generator=generator,
        )


def _randn(shape: tuple[int, ...], seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _family(shape: tuple[int, ...], seed: int, count: int = 3) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A base and `count` fine-tunes: base + small, partly opposed deltas (so sign election matters)."""
    base = _randn(shape, seed)
    return base, [base + _randn(shape, seed * 10 + i + 1, 0.1) for i in range(count)]


def _cases() -> list[Case]:
    cases: list[Case] = []
    for si, shape in enumerate(SHAPES):
        s = f"{'x'.join(map(str, shape))}"
        base, (a, b, c) = _family(shape, 100 + si)
        gta3 = [("a", a, {"weight": 1.0}), ("b", b, {"weight": 0.5}), ("c", c, {"weight": 0.3})]
        # linear
        cases += [
            Case(f"linear-default-{s}", "linear", gta3),
            Case(f"linear-nonorm-{s}", "linear", gta3, params={"normalize": False}),
            Case(
                f"linear-negative-{s}",
                "linear",
                [("a", a, {"weight": 1.5}), ("b", b, {"weight": -0.4})],
                params={"normalize": True},
            ),
            Case(f"linear-base-listed-{s}", "linear", [("base", base, {"weight": 2.0}), *gta3], base=("base", base)),
            Case(f"linear-base-appended-{s}", "linear", gta3, base=("base", base), params={"weight": 0.7}),
            Case(f"linear-single-{s}", "linear", [("a", a, {"weight": 0.3})]),
        ]
        # task arithmetic
        cases += [
            Case(f"ta-default-{s}", "task_arithmetic", gta3, base=("base", base)),
            Case(
                f"ta-norm-lambda-{s}",
                "task_arithmetic",
                gta3,
                base=("base", base),
                params={"normalize": True, "lambda": 0.7},
            ),
            Case(
                f"ta-base-listed-{s}",
                "task_arithmetic",
                [("a", a, {"weight": 1.0}), ("base", base, {}), ("b", b, {"weight": -0.5})],
                base=("base", base),
            ),
            Case(
                f"ta-zero-sum-norm-{s}",
                "task_arithmetic",
                [("a", a, {"weight": 1.0}), ("b", b, {"weight": -1.0})],
                base=("base", base),
                params={"normalize": True},
            ),
            Case(
                f"ta-global-weight-{s}",
                "task_arithmetic",
                [("a", a, {}), ("b", b, {"weight": 0.2})],
                base=("base", base),
                params={"weight": 0.6},
            ),
        ]
        # ties (magnitude + sum consensus)
        ties3 = [
            ("a", a, {"weight": 1.0, "density": 0.5}),
            ("b", b, {"weight": 0.5, "density": 0.3}),
            ("c", c, {"weight": 0.3}),
        ]
        cases += [
            Case(f"ties-default-{s}", "ties", ties3, base=("base", base)),
            Case(f"ties-nonorm-{s}", "ties", ties3, base=("base", base), params={"normalize": False}),
            Case(
                f"ties-rescale-int8-{s}",
                "ties",
                ties3,
                base=("base", base),
                params={"rescale": True, "int8_mask": True},
            ),
            Case(
                f"ties-lambda-global-density-{s}",
                "ties",
                gta3,
                base=("base", base),
                params={"density": 0.4, "lambda": 1.3},
            ),
            Case(
                f"ties-zero-sum-{s}",
                "ties",
                [("a", a, {"weight": 1.0, "density": 0.6}), ("b", b, {"weight": -1.0, "density": 0.6})],
                base=("base", base),
            ),
            Case(
                f"ties-density-edges-{s}",
                "ties",
                [
                    ("a", a, {"weight": 1.0, "density": 0.0}),
                    ("b", b, {"weight": 0.5, "density": 1.0}),
                    ("c", c, {"weight": 0.5, "density": 0.01}),
                ],
                base=("base", base),
            ),
            Case(
                f"ties-base-listed-{s}",
                "ties",
                [("base", base, {"weight": 9.0, "density": 0.1}), *ties3],
                base=("base", base),
            ),
        ]
        # breadcrumbs (magnitude outliers), with and without sign consensus
        bc = [
            ("a", a, {"weight": 1.0, "density": 0.6, "gamma": 0.05}),
            ("b", b, {"weight": 0.5, "density": 0.5}),
            ("c", c, {"weight": 0.3, "density": 0.9, "gamma": 0.2}),
        ]
        for name in ("breadcrumbs", "breadcrumbs_ties"):
            cases += [
                Case(f"{name}-default-{s}", name, bc, base=("base", base)),
                Case(
                    f"{name}-norm-rescale-{s}",
                    name,
                    bc,
                    base=("base", base),
                    params={"normalize": True, "rescale": True},
                ),
                Case(
                    f"{name}-global-{s}",
                    name,
                    gta3,
                    base=("base", base),
                    params={"density": 0.3, "gamma": 0.1, "lambda": 0.5},
                ),
            ]
        # DARE: mergekit draws from torch's global generator; seeded identically, the masks coincide
        dare = [
            ("a", a, {"weight": 1.0, "density": 0.5}),
            ("b", b, {"weight": 0.5, "density": 0.3}),
            ("c", c, {"weight": 0.3, "density": 0.9}),
        ]
        for name in ("dare_ties", "dare_linear"):
            cases += [
                Case(f"{name}-seeded-{s}", name, dare, base=("base", base), seed=7 + si),
                Case(
                    f"{name}-norm-norescale-{s}",
                    name,
                    dare,
                    base=("base", base),
                    seed=11,
                    params={"normalize": True, "rescale": False},
                ),
            ]
        # slerp
        for t in (0.0, 0.3, 0.5, 1.0):
            cases.append(
                Case(
                    f"slerp-t{t}-{s}", "slerp", [("base", base, {}), ("a", a, {})], base=("base", base), params={"t": t}
                )
            )
        other = _randn(shape, 900 + si)
        colinear = base * 1.5 + _randn(shape, 950 + si, 1e-3)  # |cos| > 0.9995: lerp
        near = base + _randn(shape, 960 + si, 0.04)  # cos just below the threshold (~0.9992): real slerp
        cases += [
            Case(
                f"slerp-wide-{s}",
                "slerp",
                [("base", base, {}), ("o", other, {})],
                base=("base", base),
                params={"t": 0.4},
            ),
            Case(
                f"slerp-base-second-{s}",
                "slerp",
                [("o", other, {}), ("base", base, {})],
                base=("base", base),
                params={"t": 0.25},
            ),
            Case(f"slerp-base-appended-{s}", "slerp", [("o", other, {})], base=("base", base), params={"t": 0.6}),
            Case(
                f"slerp-colinear-{s}",
                "slerp",
                [("base", base, {}), ("c", colinear, {})],
                base=("base", base),
                params={"t": 0.3},
            ),
            Case(
                f"slerp-near-{s}",
                "slerp",
                [("base", base, {}), ("n", near, {})],
                base=("base", base),
                params={"t": 0.7},
            ),
            Case(
                f"slerp-antipodal-{s}",
                "slerp",
                [("base", base, {}), ("n", -2 * base, {})],
                base=("base", base),
                params={"t": 0.5},
            ),
            Case(
                f"slerp-zero-base-{s}",
                "slerp",
                [("z", torch.zeros(shape), {}), ("o", other, {})],
                base=("z", torch.zeros(shape)),
                params={"t": 0.5},
            ),
            Case(
                f"slerp-t-out-of-range-{s}",
                "slerp",
                [("base", base, {}), ("o", other, {})],
                base=("base", base),
                params={"t": 1.5},
            ),
        ]
        # model_stock
        correlated = [base + 0.05 * _randn(shape, 970) + _randn(shape, 971 + i, 0.05) for i in range(3)]
        cases += [
            Case(f"model_stock-2-{s}", "model_stock", [("a", a, {}), ("b", b, {})], base=("base", base)),
            Case(f"model_stock-3-{s}", "model_stock", [("a", a, {}), ("b", b, {}), ("c", c, {})], base=("base", base)),
            Case(
                f"model_stock-correlated-{s}",
                "model_stock",
                [(f"m{i}", x, {}) for i, x in enumerate(correlated)],
                base=("base", base),
            ),
            Case(
                f"model_stock-filter-{s}",
                "model_stock",
                [("a", a, {}), ("b", b, {}), ("c", c, {})],
                base=("base", base),
                params={"filter_wise": True},
            ),
            Case(
                f"model_stock-listed-{s}",
                "model_stock",
                [("a", a, {}), ("base", base, {}), ("b", b, {})],
                base=("base", base),
            ),
            Case(
                f"model_stock-same-{s}",
                "model_stock",
                [("a", base.clone(), {}), ("b", base.clone(), {})],
                base=("base", base),
            ),
        ]

    # over 1M elements mergekit's slerp reduces norms and dot chunk by chunk (1M elements at a time)
    big_base, (big_a, big_b, _) = _family((1030, 1024), 17)
    cases += [
        Case(
            "slerp-chunked",
            "slerp",
            [("base", big_base, {}), ("a", big_a, {})],
            base=("base", big_base),
            params={"t": 0.35},
        ),
        Case(
            "ties-large",
            "ties",
            [("a", big_a, {"weight": 0.8, "density": 0.2}), ("b", big_b, {"weight": 0.4, "density": 0.35})],
            base=("base", big_base),
        ),
    ]

    # errors in mergekit too: aloekit raises UserError
    base, (a, b, c) = _family((8, 4), 5)
    cases += [
        Case(
            "err-ties-missing-weight",
            "ties",
            [("a", a, {"weight": 1.0}), ("b", b, {})],
            base=("base", base),
            expect_error=True,
        ),
        Case("err-ties-no-base", "ties", [("a", a, {"weight": 1.0})], expect_error=True),
        Case("err-linear-missing-weight", "linear", [("a", a, {"weight": 1.0}), ("b", b, {})], expect_error=True),
        Case(
            "err-linear-appended-base-no-weight",
            "linear",
            [("a", a, {"weight": 1.0})],
            base=("base", base),
            expect_error=True,
        ),
        Case("err-slerp-no-t", "slerp", [("base", base, {}), ("a", a, {})], base=("base", base), expect_error=True),
        Case(
            "err-slerp-three",
            "slerp",
            [("a", a, {}), ("b", b, {})],
            base=("base", base),
            params={"t": 0.5},
            expect_error=True,
        ),
        Case("err-slerp-no-base", "slerp", [("a", a, {}), ("b", b, {})], params={"t": 0.5}, expect_error=True),
        Case("err-model_stock-one", "model_stock", [("a", a, {})], base=("base", base), expect_error=True),
        Case("err-model_stock-no-base", "model_stock", [("a", a, {}), ("b", b, {})], expect_error=True),
    ]
    return cases


CASES = _cases()
SPEC_IDS = sorted(METHODS)
MASK_DELTAS = _randn((4, 6, 5), 4242)
MASK_DELTAS[0, 0, :] = 0.0  # exact zeros never agree


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every reference result, computed by mergekit 0.1.5 in one subprocess."""
    if not MERGEKIT_PYTHON.exists():
        pytest.skip(f"mergekit 0.1.5 reference venv missing ({MERGEKIT_PYTHON}); `make install` creates it")
    folder = tmp_path_factory.mktemp("mergekit")
    requests: dict[str, dict[str, Any]] = {case.id: case.reference() for case in CASES}
    for method in SPEC_IDS:
        requests[f"spec-{method}"] = {"function": "spec", "method": method}
    for consensus in ("sum", "count"):
        for int8 in (False, True):
            requests[f"mask-{consensus}-{int8}"] = {
                "function": "get_mask",
                "deltas": MASK_DELTAS,
                "consensus": consensus,
                "int8_mask": int8,
            }
    ids = list(requests)
    torch.save([requests[i] for i in ids], folder / "cases.pt")
    done = subprocess.run(
        [str(MERGEKIT_PYTHON), str(REF_SCRIPT), str(folder / "cases.pt"), str(folder / "results.pt")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = torch.load(folder / "results.pt", weights_only=True)
    return dict(zip(ids, results, strict=True))


@needs_mergekit
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_parity_with_mergekit(case: Case, reference: dict[str, Any]) -> None:
    expected = reference[case.id]
    if case.expect_error:
        assert isinstance(expected, dict) and "error" in expected, f"mergekit did not fail: {expected}"
        with pytest.raises(UserError) as raised:
            case.ours()
        assert "\n" not in str(raised.value)
        return
    assert isinstance(expected, torch.Tensor), f"mergekit failed: {expected}"
    ours = case.ours()
    assert ours.dtype == torch.float32 and ours.shape == expected.shape
    difference = (ours - expected.float()).abs().max().item()
    assert difference <= TOLERANCE, f"max |aloekit - mergekit| = {difference:.3g}"


@needs_mergekit
@pytest.mark.parametrize("method", SPEC_IDS)
def test_declared_parameters_match_mergekit(method: str, reference: dict[str, Any]) -> None:
    spec = reference[f"spec-{method}"]
    ours = METHODS[method]
    assert ours.needs_base == spec["needs_base"]
    assert ours.model_params == {n for n, p in spec["params"].items() if p["scope"] != "shared"}
    assert ours.global_params == {n for n, p in spec["params"].items() if p["scope"] == "shared"}
    for name, declared in spec["params"].items():
        default = None if declared["default"] == "REQUIRED" else declared["default"]
        assert ours.defaults[name] == default, name
        assert type(ours.defaults[name]) is type(default), name


@needs_mergekit
@pytest.mark.parametrize("consensus", ["sum", "count"])
@pytest.mark.parametrize("int8", [False, True])
def test_sign_consensus_matches_mergekit(consensus: str, int8: bool, reference: dict[str, Any]) -> None:
    assert torch.equal(sign_consensus_mask(MASK_DELTAS, consensus), reference[f"mask-{consensus}-{int8}"])


def test_linear_zero_weight_sum_with_normalize_is_refused() -> None:
    """mergekit 0.1.5 divides by zero (inf/NaN in the model); aloekit refuses with a one-line UserError."""
    _, (a, b, _) = _family((5, 3), 1)
    with pytest.raises(UserError, match="sum to 0") as raised:
        merge_tensor(
            "linear", models=[(a, {"weight": 1.0}), (b, {"weight": -1.0})], base=None, base_index=None, params={}
        )
    assert "\n" not in str(raised.value)
    # without normalize there is no division: a plain difference
    out = merge_tensor(
        "linear",
        models=[(a, {"weight": 1.0}), (b, {"weight": -1.0})],
        base=None,
        base_index=None,
        params={"normalize": False},
    )
    torch.testing.assert_close(out, a - b)


# --- DARE: statistics, without mergekit -----------------------------------------------------------------------

N = 1_000_000


def _dare(method: str, delta: torch.Tensor, seed: int | None, **params: Any) -> torch.Tensor:
    density = params.pop("density", 0.3)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return merge_tensor(
        method,
        models=[(delta, {"weight": 1.0, "density": density})],
        base=torch.zeros_like(delta),
        base_index=None,
        params=params,
        generator=generator,
    )


@pytest.fixture(scope="module")
def big_delta() -> torch.Tensor:
    delta = _randn((1000, 1000), 31337)
    delta[delta == 0] = 1.0  # every entry nonzero, so "kept" is visible
    return delta


@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_dare_keep_rate_and_l1_rescale(method: str, density: float, big_delta: torch.Tensor) -> None:
    out = _dare(method, big_delta, seed=1, density=density)  # rescale defaults to True for DARE
    kept = out != 0
    k = int(kept.sum())
    sigma = math.sqrt(N * density * (1 - density))
    assert abs(k - N * density) <= 5 * sigma, (k, N * density, sigma)
    # mergekit 0.1.5 rescales to the L1 mass of the whole delta, one factor for all kept entries...
    factor = big_delta.abs().sum() / big_delta[kept].abs().sum()
    torch.testing.assert_close(out[kept], big_delta[kept] * factor, rtol=1e-6, atol=0)
    assert torch.all(out[~kept] == 0)
    # ...which is 1/density up to the sampling noise of the mask (relative sd ≈ 1.3·sqrt((1-p)/(p·N)))
    relative_sd = 1.3 * math.sqrt((1 - density) / (density * N))
    assert abs(float(factor) * density - 1) <= 6 * relative_sd


@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_dare_without_rescale_keeps_values(method: str, big_delta: torch.Tensor) -> None:
    out = _dare(method, big_delta, seed=2, density=0.4, rescale=False)
    kept = out != 0
    assert torch.equal(out[kept], big_delta[kept])
    assert abs(int(kept.sum()) - 0.4 * N) <= 5 * math.sqrt(N * 0.4 * 0.6)


@pytest.mark.parametrize("method", ["dare_ties", "dare_linear"])
def test_dare_is_deterministic_per_generator_state(method: str) -> None:
    delta = _randn((64, 64), 5)
    first = _dare(method, delta, seed=123, density=0.5)
    assert torch.equal(first, _dare(method, delta, seed=123, density=0.5))
    assert not torch.equal(first, _dare(method, delta, seed=124, density=0.5))
    # generator None: torch's global generator, as mergekit uses it
    torch.manual_seed(123)
    assert torch.equal(first, _dare(method, delta, seed=None, density=0.5))


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("rescale", [False, True])
def test_dare_ties_at_density_one_is_ties(normalize: bool, rescale: bool) -> None:
    """Neither sparsifier touches a delta at density 1, and DARE draws nothing (the generator is not advanced)."""
    base, models = _family((12, 9), 77)
    entries = [(x, {"weight": w, "density": 1.0}) for x, w in zip(models, (1.0, 0.6, -0.3), strict=True)]
    params = {"normalize": normalize, "rescale": rescale, "lambda": 0.8}
    generator = torch.Generator().manual_seed(9)
    state = generator.get_state()
    dare = merge_tensor("dare_ties", models=entries, base=base, base_index=None, params=params, generator=generator)
    ties = merge_tensor("ties", models=entries, base=base, base_index=None, params=params)
    assert torch.equal(dare, ties)
    assert torch.equal(generator.get_state(), state)


# --- specification: edge cases --------------------------------------------------------------------------------

GTA = ["task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs", "breadcrumbs_ties"]


@pytest.mark.parametrize("method", GTA)
def test_all_zero_deltas_give_the_base(method: str) -> None:
    base = _randn((10, 7), 3)
    models = [(base.clone(), {"weight": 1.0, "density": 0.5}), (base.clone(), {"weight": 0.5, "density": 0.5})]
    for normalize in (False, True):
        for rescale in (False, True):
            out = merge_tensor(
                method,
                models=models,
                base=base,
                base_index=None,
                params={"normalize": normalize, "rescale": rescale},
                generator=torch.Generator().manual_seed(0),
            )
            assert torch.equal(out, base)


def test_all_zero_offsets_in_model_stock_and_equal_slerp() -> None:
    base = _randn((6, 5), 4)
    same = [(base.clone(), {}), (base.clone(), {})]
    assert torch.equal(merge_tensor("model_stock", models=same, base=base, base_index=None, params={}), base)
    out = merge_tensor("slerp", models=[(base, {}), (base.clone(), {})], base=base, base_index=0, params={"t": 0.4})
    torch.testing.assert_close(out, base)


def test_single_model() -> None:
    base, (a, _, _) = _family((20,), 8)
    delta = a - base
    one = [(a, {"weight": 0.5})]
    kw: dict[str, Any] = {"base": base, "base_index": None}
    torch.testing.assert_close(merge_tensor("task_arithmetic", models=one, params={}, **kw), base + 0.5 * delta)
    # ties normalises by the weight of the agreeing entries: a lone model contributes its full delta
    torch.testing.assert_close(merge_tensor("ties", models=one, params={}, **kw), base + delta)
    torch.testing.assert_close(merge_tensor("ties", models=one, params={"normalize": False}, **kw), base + 0.5 * delta)
    torch.testing.assert_close(merge_tensor("linear", models=one, base=None, base_index=None, params={}), a)
    # only the base: nothing to add
    for method in GTA:
        out = merge_tensor(method, models=[(base, {})], base=base, base_index=0, params={})
        assert torch.equal(out, base)


def test_weights_summing_to_zero_with_normalize() -> None:
    """Task arithmetic replaces a |Σw| < 1e-8 divisor by 1; TIES replaces each 0 per-entry divisor by 1."""
    base, (a, b, _) = _family((30,), 9)
    models = [(a, {"weight": 1.0}), (b, {"weight": -1.0})]
    out = merge_tensor("task_arithmetic", models=models, base=base, base_index=None, params={"normalize": True})
    torch.testing.assert_close(out, base + (a - base) - (b - base))
    ties = merge_tensor("ties", models=models, base=base, base_index=None, params={})
    assert torch.isfinite(ties).all()


@pytest.mark.parametrize("method", [*GTA, "model_stock", "slerp"])
def test_base_listed_in_models_is_the_base(method: str) -> None:
    """Listed or appended, the base is the same input; its own parameters are ignored (not even required)."""
    base, (a, b, _) = _family((9, 4), 10)
    others = [(a, {"weight": 0.7, "density": 0.6}), (b, {"weight": 0.4, "density": 0.6})]
    if method == "slerp":
        others = others[:1]
    params = {"t": 0.3} if method == "slerp" else {}
    appended = merge_tensor(
        method, models=others, base=base, base_index=None, params=params, generator=torch.Generator().manual_seed(1)
    )
    listed = merge_tensor(
        method,
        models=[others[0], (base, {"weight": 123.0, "density": 0.01}), *others[1:]],
        base=base,
        base_index=1,
        params=params,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(appended, listed)
    no_params = merge_tensor(
        method,
        models=[(base, {}), *others],
        base=base,
        base_index=0,
        params=params,
        generator=torch.Generator().manual_seed(1),
    )
    assert torch.equal(appended, no_params)


def test_linear_merges_the_base_as_an_input() -> None:
    base, (a, _, _) = _family((9,), 11)
    listed = merge_tensor(
        "linear", models=[(base, {"weight": 1.0}), (a, {"weight": 3.0})], base=base, base_index=0, params={}
    )
    torch.testing.assert_close(listed, (base + 3 * a) / 4)
    appended = merge_tensor("linear", models=[(a, {"weight": 3.0})], base=base, base_index=None, params={"weight": 1.0})
    torch.testing.assert_close(appended, listed)


@pytest.mark.parametrize(
    ("method", "models", "base", "params", "match"),
    [
        ("ties", [({"weight": 1.0})], False, {}, "needs a base_model"),
        ("dare_linear", [({})], True, {}, "missing required parameter 'weight'"),
        ("slerp", [({})], True, {}, "missing required parameter 't'"),
        ("linear", [({"weight": 1.0}), ({})], False, {}, r"'weight' for models\[1\]"),
        ("ties", [({"weight": 1.0, "density": -0.1})], True, {}, "density must be >= 0"),
        ("ties", [({"weight": 1.0})], True, {"normalize": "yes"}, "true or false"),
        ("nope", [({"weight": 1.0})], True, {}, "unknown merge method"),
    ],
)
def test_user_errors_are_one_line(method: str, models: list, base: bool, params: dict, match: str) -> None:
    tensor = torch.ones(3)
    with pytest.raises(UserError, match=match) as raised:
        merge_tensor(
            method,
            models=[(tensor, p) for p in models],
            base=torch.zeros(3) if base else None,
            base_index=None,
            params=params,
        )
    assert "\n" not in str(raised.value)


def test_shape_mismatch_is_a_user_error() -> None:
    with pytest.raises(UserError, match="differ in shape"):
        merge_tensor(
            "linear",
            models=[(torch.ones(3), {"weight": 1.0}), (torch.ones(4), {"weight": 1.0})],
            base=None,
            base_index=None,
            params={},
        )


def test_method_table() -> None:
    assert set(METHODS) == {*GTA, "linear", "slerp", "model_stock"}
    assert METHODS["ties"].defaults["normalize"] is True
    assert METHODS["dare_ties"].defaults["normalize"] is False and METHODS["dare_linear"].defaults["normalize"] is False
    assert METHODS["dare_ties"].defaults["rescale"] is True and METHODS["ties"].defaults["rescale"] is False
    assert {name for name, m in METHODS.items() if m.random} == {"dare_ties", "dare_linear"}
    for name, method in METHODS.items():
        assert method.name == name
        assert set(method.defaults) == method.model_params | method.global_params


def test_outputs_are_float32_from_bf16_inputs() -> None:
    base, (a, b, _) = _family((4, 4), 12)
    out = merge_tensor(
        "ties",
        models=[(a.bfloat16(), {"weight": 1.0}), (b.bfloat16(), {"weight": 1.0})],
        base=base.bfloat16(),
        base_index=None,
        params={},
    )
    assert out.dtype == torch.float32


def test_dares_mask_is_the_one_torch_bernoulli_draws_from_the_same_generator_state(big_delta: torch.Tensor) -> None:
    # mergekit draws torch.bernoulli(full_like(delta, density)); rand < density is the same mask, five times faster.
    ours = dare_drop(big_delta, 0.3, rescale=False, generator=torch.Generator().manual_seed(5))
    probabilities = torch.full_like(big_delta, 0.3)
    theirs = torch.bernoulli(probabilities, generator=torch.Generator().manual_seed(5))
    assert torch.equal(ours != 0, theirs != 0)
