"""The merge pipeline end to end: mergekit YAML in, validated plan, streamed and atomic safetensors out.

Inputs are tiny llama variants made from the ``tiny_llama`` fixture by perturbing its weights and saving with
``save_pretrained``; merges of these take well under a second each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import weakref
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from aloekit.errors import UserError
from aloekit.merge import methods, run
from aloekit.merge.config import load_merge_config, parse_merge_config
from aloekit.merge.plan import MergeWarning, plan
from aloekit.merge.settings import evaluate_setting, float_or_bool, layer_t
from support import aloe, assert_one_line_error

NUMBER = float_or_bool(float)
FLAG = float_or_bool(bool)


# --- fixtures ------------------------------------------------------------------------------------------------


def _variant(
    source: Path, target: Path, *, seed: int, scale: float = 0.02, untie: bool = False, **save: object
) -> Path:
    """A copy of ``source`` with seeded noise on every weight, saved with save_pretrained (plus its tokenizer)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
        if untie:
            model.config.tie_word_embeddings = False
            head = model.get_input_embeddings().weight.detach().clone()
            model.lm_head.weight = torch.nn.Parameter(head + torch.randn(head.shape, generator=generator) * scale)
    model.save_pretrained(target, **save)
    AutoTokenizer.from_pretrained(source).save_pretrained(target)
    shutil.copyfile(source / "generation_config.json", target / "generation_config.json")
    return target


@pytest.fixture(scope="module")
def variants(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merge-variants")
    return {
        "a": _variant(tiny_llama, root / "a", seed=1),
        "b": _variant(tiny_llama, root / "b", seed=2),
        # The same weights as "a", saved in several shards (the embedding alone is ~12 MB).
        "a_sharded": _variant(tiny_llama, root / "a_sharded", seed=1, max_shard_size="100KB"),
        "untied": _variant(tiny_llama, root / "untied", seed=3, untie=True),
    }


def _yaml(folder: Path, text: str, name: str = "merge.yml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def _state(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


def _leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


# --- YAML ----------------------------------------------------------------------------------------------------


def test_realistic_mergekit_yamls_are_accepted_unchanged(tiny_llama: Path, variants: dict[str, Path], tmp_path: Path):
    dare = _yaml(
        tmp_path,
        f"""
        # a typical mergekit-yaml recipe, unchanged
        models:
          - model: {tiny_llama}
            # no parameters necessary for base model
          - model: {variants["a"]}
            parameters:
              density: 0.53
              weight: 0.4
          - model: {variants["b"]}
            parameters:
              density: 0.53
              weight: [0.2, 0.8]
        merge_method: dare_ties
        base_model: {tiny_llama}
        parameters:
          int8_mask: true
        dtype: bfloat16
        """,
        "dare.yml",
    )
    config = load_merge_config(dare)
    assert config.merge_method == "dare_ties" and config.dtype == "bfloat16"
    assert config.source_text == dare.read_text()
    merge_plan = plan(config)
    assert merge_plan.base_index == 0 and merge_plan.random and merge_plan.out_dtype == "bfloat16"
    jobs = {job.name: job for job in merge_plan.jobs}
    layer0, layer1 = jobs["model.layers.0.mlp.up_proj.weight"], jobs["model.layers.1.mlp.up_proj.weight"]
    assert layer0.model_params[1] == {"weight": 0.4, "density": 0.53}
    assert (layer0.model_params[2]["weight"], layer1.model_params[2]["weight"]) == (0.2, 0.8)
    assert layer0.global_params["int8_mask"] is True
    assert layer0.model_params[0] == {"density": 1.0}  # the listed base: its missing weight is not an error

    slerp = _yaml(
        tmp_path,
        f"""
        slices:
          - sources:
              - model: {variants["a"]}
                layer_range: [0, 2]
              - model: {variants["b"]}
                layer_range: [0, 2]
        merge_method: slerp
        base_model: {variants["a"]}
        parameters:
          t:
            - filter: self_attn
              value: [0, 0.5, 0.3, 0.7, 1]
            - filter: mlp
              value: [1, 0.5, 0.7, 0.3, 0]
            - value: 0.5
        dtype: float32
        """,
        "slerp.yml",
    )
    jobs = {job.name: job for job in plan(load_merge_config(slerp)).jobs}
    assert jobs["model.layers.0.self_attn.q_proj.weight"].global_params == {"t": 0.0}
    assert jobs["model.layers.1.self_attn.q_proj.weight"].global_params == {"t": 1.0}
    assert jobs["model.layers.0.mlp.down_proj.weight"].global_params == {"t": 1.0}
    assert jobs["model.layers.1.mlp.down_proj.weight"].global_params == {"t": 0.0}
    assert jobs["model.layers.0.input_layernorm.weight"].global_params == {"t": 0.5}
    assert jobs["model.norm.weight"].global_params == {"t": 0.5}

    linear = _yaml(
        tmp_path,
        f"""
        merge_method: linear
        models:
          - model: {variants["a"]}
            parameters:
              weight:
                - filter: self_attn
                  value: 0.9
                - filter: mlp
                  value: 0.1
                - value: 0.5
          - model: {variants["b"]}
            parameters:
              weight: 0.5
        parameters:
          normalize: true
        tokenizer_source: base
        chat_template: auto
        aloekit:
          seed: 3
          shard_size: 4MB
        """,
        "linear.yml",
    )
    with pytest.raises(UserError, match="tokenizer_source is 'base' but there is no base_model"):
        plan(load_merge_config(linear))
    text = linear.read_text().replace("tokenizer_source: base", f"tokenizer_source: {variants['b']}")
    config = parse_merge_config(text)
    assert config.aloekit.seed == 3 and config.aloekit.shard_size == 4_000_000
    merge_plan = plan(config)
    jobs = {job.name: job for job in merge_plan.jobs}
    assert jobs["model.layers.1.self_attn.o_proj.weight"].model_params[0] == {"weight": 0.9}
    assert jobs["model.layers.1.mlp.gate_proj.weight"].model_params[0] == {"weight": 0.1}
    assert jobs["model.embed_tokens.weight"].model_params[0] == {"weight": 0.5}
    assert merge_plan.tokenizer_source.path == variants["b"]
    assert merge_plan.chat_template and "im_start" in merge_plan.chat_template  # SmolLM2's, by plurality
    assert len(merge_plan.shards) > 1


def test_gradients_and_filters_resolve_like_mergekit_0_1_5():
    # Layer i of N sits at t = i / (N - 1); tensors outside the layers (embeddings, final norm, lm_head) at t = 0.
    assert [layer_t(i, 5) for i in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert layer_t(None, 5) == 0.0 and layer_t(0, 1) == 1.0
    # Anchors span layers 0..N-1; between two anchors, linear interpolation (scaled = t * (len - 1)).
    anchors = [1.0, 0.0, 1.0]
    values = [evaluate_setting("x", anchors, layer_t(i, 4), NUMBER) for i in range(4)]
    assert values == pytest.approx([1.0, 1 / 3, 1 / 3, 1.0])
    assert [evaluate_setting("x", [0.2, 0.8], layer_t(i, 3), NUMBER) for i in range(3)] == pytest.approx(
        [0.2, 0.5, 0.8]
    )
    # Booleans pick an anchor (int(t * (len - 1))), never blend.
    assert [evaluate_setting("x", [True, False], layer_t(i, 3), FLAG) for i in range(3)] == [True, True, False]
    # YAML reads 1e-3 as a string; it is a number for a numeric parameter.
    assert evaluate_setting("x", "1e-3", 0.0, NUMBER) == 0.001
    # Filters: first match wins, a rule without filter (or '*') matches everything, no match -> None.
    rules = [{"filter": "mlp", "value": [0.0, 1.0]}, {"filter": "self_attn", "value": 0.3}]
    assert evaluate_setting("model.layers.3.mlp.up_proj.weight", rules, 0.25, NUMBER) == 0.25
    assert evaluate_setting("model.layers.3.self_attn.q_proj.weight", rules, 0.25, NUMBER) == 0.3
    assert evaluate_setting("model.norm.weight", rules, 0.25, NUMBER) is None
    assert evaluate_setting("model.norm.weight", [*rules, {"filter": "*", "value": 7}], 0.0, NUMBER) == 7.0


def test_model_parameters_fall_back_to_top_level_then_defaults(variants: dict[str, Path], tiny_llama: Path):
    config = parse_merge_config(
        f"""
merge_method: ties
base_model: {tiny_llama}
models:
  - model: {variants["a"]}
    parameters: {{weight: 0.7, density: [{{filter: self_attn, value: 0.2}}]}}
  - model: {variants["b"]}
parameters: {{weight: 0.3, density: 0.6, normalize: false, unused_knob: 1}}
"""
    )
    with pytest.warns(MergeWarning, match="unused_knob"):
        merge_plan = plan(config)
    jobs = {job.name: job for job in merge_plan.jobs}
    attn, mlp = jobs["model.layers.0.self_attn.q_proj.weight"], jobs["model.layers.0.mlp.up_proj.weight"]
    assert attn.model_params[0] == {"weight": 0.7, "density": 0.2}
    assert mlp.model_params[0] == {"weight": 0.7, "density": 0.6}  # no rule matched: the top-level value
    assert attn.model_params[1] == {"weight": 0.3, "density": 0.6}
    assert attn.global_params == {"int8_mask": False, "lambda": 1.0, "normalize": False, "rescale": False}
    assert merge_plan.base == 2 and merge_plan.base_index is None


def test_relative_model_paths_resolve_next_to_the_yaml(variants: dict[str, Path]):
    folder = variants["a"].parent
    config = _yaml(folder, "merge_method: linear\nmodels:\n  - model: a\n  - model: ./b\nparameters: {weight: 1}\n")
    merge_plan = plan(load_merge_config(config))
    assert [m.path for m in merge_plan.inputs] == [variants["a"], variants["b"]]
    assert [m.reference for m in merge_plan.inputs] == ["a", "./b"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("merge_method: linear\nmodels:\n  - model: x\n    parameters: {weight: [0.1, 0.2}\n", "line 4: invalid YAML"),
        ("merge_method: frankenmerge\nmodels:\n  - model: x\n", "line 1: merge_method: unknown merge_method"),
        ("merge_method: della\nmodels:\n  - model: x\n", "not supported yet; supported: linear"),
        (
            "merge_method: linear\nmodels:\n  - model: x\n    paramters: {weight: 1}\n",
            "line 4: unknown key 'paramters'",
        ),
        ("merge_method: linear\nweigth: 1\nmodels:\n  - model: x\n", "unknown key 'weigth' in the config (known keys"),
        ("merge_method: linear\n", "no models to merge"),
        ("merge_method: linear\nmodels: []\n", "no models to merge"),
        ("models:\n  - model: x\n", "no merge_method"),
        ("merge_method: ties\nmodels:\n  - model: x\ntokenizer_source: union\n", "'union' (merging vocabularies) is"),
        ("merge_method: ties\nmodels:\n  - model: x\ntokenizer: {source: union}\n", "not supported yet"),
        ("merge_method: ties\nmodels:\n  - model: a+lora\n", "LoRA adapter"),
        ("merge_method: ties\nmodules: {text: {models: [{model: x}]}}\n", "'modules'"),
        ("merge_method: ties\nmodels:\n  - model: x\n    parameters: {weight: {a: 1}}\n", "unknown key 'a'"),
        ("merge_method: ties\nmodels:\n  - model: x\ndtype: int4\n", "unknown dtype 'int4'"),
        ("merge_method: ties\nmodels:\n  - model: x\naloekit: {shard_size: lots}\n", "cannot read size"),
        ("merge_method: ties\nmodels:\n  - model: x\nchat_template: llama3\n", "not bundled"),
    ],
)
def test_bad_configs_are_refused_in_one_line(tmp_path: Path, text: str, expected: str):
    path = _yaml(tmp_path, text, "bad.yml")
    with pytest.raises(UserError) as error:
        load_merge_config(path)
    assert expected in error.value.message
    assert str(path) in error.value.message and "\n" not in error.value.message


def test_plan_time_refusals(tmp_path: Path, variants: dict[str, Path], tiny_llama: Path):
    a, b = variants["a"], variants["b"]
    cases = [
        (f"merge_method: ties\nmodels:\n  - model: {a}\n    parameters: {{weight: 1}}\n", "needs a base_model"),
        (f"merge_method: linear\nmodels:\n  - model: {a}\n  - model: {b}\n", f"model '{a}' has no 'weight'"),
        (
            f"merge_method: slerp\nbase_model: {a}\nmodels:\n  - model: {a}\n  - model: {b}\n",
            "needs parameter 't'",
        ),
        (
            f"merge_method: slerp\nbase_model: {tiny_llama}\nparameters: {{t: 0.5}}\nmodels:\n  - model: {a}\n"
            f"  - model: {b}\n",
            "exactly two models",
        ),
        (
            f"slices:\n  - sources:\n      - model: {a}\n        layer_range: [0, 1]\n      - model: {b}\n"
            f"        layer_range: [0, 1]\nmerge_method: linear\nparameters: {{weight: 1}}\n",
            "not supported yet",
        ),
    ]
    for text, expected in cases:
        with pytest.raises(UserError) as error:
            plan(parse_merge_config(text))
        assert expected in error.value.message, error.value.message


# --- refusing incompatible inputs before writing anything ---------------------------------------------------


@pytest.fixture(scope="module")
def broken(tiny_llama: Path, variants: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from transformers import AutoConfig, AutoModelForCausalLM

    root = tmp_path_factory.mktemp("merge-broken")
    missing = root / "missing"
    shutil.copytree(variants["b"], missing)
    state = load_file(missing / "model.safetensors")
    del state["model.layers.1.mlp.up_proj.weight"]
    save_file(state, missing / "model.safetensors", metadata={"format": "pt"})

    reshaped = root / "reshaped"
    shutil.copytree(variants["b"], reshaped)
    state = load_file(reshaped / "model.safetensors")
    state["model.layers.0.mlp.gate_proj.weight"] = torch.zeros(96, 64)
    save_file(state, reshaped / "model.safetensors", metadata={"format": "pt"})

    config = AutoConfig.from_pretrained(tiny_llama)
    config.vocab_size += 64
    torch.manual_seed(0)
    bigger_vocab = root / "bigger-vocab"
    AutoModelForCausalLM.from_config(config).save_pretrained(bigger_vocab)
    return {"missing": missing, "reshaped": reshaped, "vocab": bigger_vocab}


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("qwen2", ["is Qwen2ForCausalLM (model_type qwen2)", "is LlamaForCausalLM", "one architecture"]),
        ("missing", ["has no tensor 'model.layers.1.mlp.up_proj.weight'", "same tensors"]),
        ("reshaped", ["tensor 'model.layers.0.mlp.gate_proj.weight' has shape [96, 64]", "[128, 64]"]),
        ("vocab", ["vocabulary of 49216 tokens", "49152", "tokenizer merging, which is not supported"]),
    ],
)
def test_incompatible_models_are_refused_before_anything_is_written(
    other: str,
    expected: list[str],
    variants: dict[str, Path],
    broken: dict[str, Path],
    tiny_models: dict[str, Path],
    tmp_path: Path,
):
    other_path = tiny_models["qwen2"] if other == "qwen2" else broken[other]
    config = _yaml(
        tmp_path,
        f"""
        merge_method: linear
        models:
          - model: {variants["a"]}
            parameters: {{weight: 0.5}}
          - model: {other_path}
            parameters: {{weight: 0.5}}
        """,
    )
    out = tmp_path / "out" / "merged"
    with pytest.raises(UserError) as error:
        run.merge(config, out, progress=False)
    message = error.value.message
    assert "\n" not in message
    assert f"'{other_path}'" in message and f"'{variants['a']}'" in message  # names both models
    for part in expected:
        assert part in message, message
    assert not out.exists() and not out.parent.exists()


# --- merging -------------------------------------------------------------------------------------------------


def test_linear_merge_loads_with_transformers_and_generates(variants: dict[str, Path], tmp_path: Path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    text = f"""
    merge_method: linear
    models:
      - model: {variants["a"]}
        parameters:
          weight: 0.5
      - model: {variants["b"]}
        parameters:
          weight: 0.5
    dtype: float32
    """
    config = _yaml(tmp_path, text)
    out = run.merge(config, tmp_path / "merged", progress=False)
    assert out == tmp_path / "merged"

    a, b, merged = _state(variants["a"]), _state(variants["b"]), _state(out)
    assert set(merged) == set(a)  # tied embeddings: no lm_head.weight, as in the inputs
    for name, tensor in merged.items():
        torch.testing.assert_close(tensor, (a[name] + b[name]) / 2, rtol=0, atol=1e-6)

    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.tie_word_embeddings
    torch.testing.assert_close(model.get_input_embeddings().weight, merged["model.embed_tokens.weight"])
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is anaemia?"}], add_generation_prompt=True, tokenize=False
    )
    assert "<|im_start|>assistant" in prompt
    ids = tokenizer(prompt, return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 5

    assert (out / "chat_template.jinja").is_file() and (out / "generation_config.json").is_file()
    assert (out / "mergekit_config.yml").read_text() == config.read_text()
    assert json.loads((out / "config.json").read_text())["dtype"] == "float32"
    card = (out / "README.md").read_text()
    assert "**linear**" in card and str(variants["a"]) in card and "aloekit" in card
    record = json.loads((out / "aloe_merge.json").read_text())
    assert record["method"] == "linear" and record["tensors"] == len(merged) and record["seconds"] >= 0
    assert [i["reference"] for i in record["inputs"]] == [str(variants["a"]), str(variants["b"])]
    assert all(len(i["fingerprint"]) == 64 for i in record["inputs"])
    assert record["versions"]["torch"] == torch.__version__
    assert _leftovers(out) == []


def test_linear_merge_of_a_model_with_itself_is_that_model(variants: dict[str, Path], tmp_path: Path):
    a = variants["a"]
    config = parse_merge_config(
        f"merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n"
        f"  - model: {a}\n    parameters: {{weight: 0.5}}\n"
    )
    out = run.merge(config, tmp_path / "same", progress=False)
    original, merged = _state(a), _state(out)
    assert set(original) == set(merged)
    for name, tensor in original.items():
        assert merged[name].dtype == tensor.dtype and torch.equal(merged[name], tensor), name


def test_sharded_inputs_and_sharded_output(variants: dict[str, Path], tmp_path: Path):
    assert len(list(variants["a_sharded"].glob("*.safetensors"))) > 2
    assert (variants["a_sharded"] / "model.safetensors.index.json").is_file()
    body = "merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.3}}\n"
    body += "  - model: {b}\n    parameters: {{weight: 0.7}}\naloekit: {{shard_size: {size}}}\n"
    whole = run.merge(
        parse_merge_config(body.format(a=variants["a"], b=variants["b"], size="10GB")), tmp_path / "w", progress=False
    )
    sharded = run.merge(
        parse_merge_config(body.format(a=variants["a_sharded"], b=variants["b"], size="100KB")),
        tmp_path / "s",
        progress=False,
    )
    assert [p.name for p in whole.glob("*.safetensors")] == ["model.safetensors"]
    assert not (whole / "model.safetensors.index.json").exists()

    shards = sorted(p.name for p in sharded.glob("*.safetensors"))
    assert len(shards) > 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    reference = _state(whole)
    assert set(index["weight_map"]) == set(reference) and set(index["weight_map"].values()) == set(shards)
    total = 0
    for name, shard in index["weight_map"].items():
        with safe_open(sharded / shard, framework="pt") as f:
            tensor = f.get_tensor(name)
        assert torch.equal(tensor, reference[name]), name  # same result from sharded inputs
        total += tensor.numel() * tensor.element_size()
    assert index["metadata"]["total_size"] == total
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(sharded)  # transformers reads the sharded output


def test_tied_and_untied_models_merge(variants: dict[str, Path], tmp_path: Path):
    untied, a = variants["untied"], variants["a"]
    config = parse_merge_config(
        f"merge_method: linear\nmodels:\n  - model: {untied}\n    parameters: {{weight: 0.5}}\n"
        f"  - model: {a}\n    parameters: {{weight: 0.5}}\n"
    )
    out = run.merge(config, tmp_path / "m", progress=False)  # config from the first model: untied
    merged, u, t = _state(out), _state(untied), _state(a)
    # The tied model lends its embedding matrix as its lm_head.
    expected = (u["lm_head.weight"] + t["model.embed_tokens.weight"]) / 2
    torch.testing.assert_close(merged["lm_head.weight"], expected, rtol=0, atol=1e-6)

    swapped = parse_merge_config(
        f"merge_method: linear\nmodels:\n  - model: {a}\n    parameters: {{weight: 0.5}}\n"
        f"  - model: {untied}\n    parameters: {{weight: 0.5}}\n"
    )
    with pytest.warns(MergeWarning, match="has its own lm_head"):
        out = run.merge(swapped, tmp_path / "n", progress=False)
    assert "lm_head.weight" not in _state(out)


def test_same_seed_same_output_for_a_random_method(tiny_llama: Path, variants: dict[str, Path], tmp_path: Path):
    text = f"""
    merge_method: dare_ties
    base_model: {tiny_llama}
    models:
      - model: {variants["a"]}
        parameters: {{weight: 0.5, density: 0.5}}
      - model: {variants["b"]}
        parameters: {{weight: 0.5, density: 0.5}}
    parameters: {{int8_mask: true}}
    aloekit: {{seed: 11}}
    """
    config = _yaml(tmp_path, text)
    first = _state(run.merge(config, tmp_path / "one", progress=True))
    second = _state(run.merge(config, tmp_path / "two", progress=False))
    other = _state(run.merge(config, tmp_path / "three", seed=12, progress=False))
    name = "model.layers.0.mlp.up_proj.weight"
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first[name], other[name])
    assert json.loads((tmp_path / "three" / "aloe_merge.json").read_text())["seed"] == 12
    # Per-tensor seeds depend on the run seed and the tensor name only, not on the order tensors are merged in.
    assert run.tensor_seed(11, name) == run.tensor_seed(11, name) != run.tensor_seed(11, name.replace("0", "1"))


def test_at_most_one_tensor_per_input_is_materialised(
    tiny_llama: Path, variants: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # Every tensor merging holds (read from disk, cast for the merge, merge results) is counted while alive.
    live = {"now": 0, "peak": 0, "reads": 0}
    seen: dict[int, weakref.ref] = {}

    def track(tensor: torch.Tensor) -> torch.Tensor:
        if id(tensor) in seen and seen[id(tensor)]() is tensor:
            return tensor
        seen[id(tensor)] = weakref.ref(tensor)
        live["now"] += 1
        live["peak"] = max(live["peak"], live["now"])
        weakref.finalize(tensor, lambda: live.__setitem__("now", live["now"] - 1))
        return tensor

    real_read, real_merge = run._read_tensor, methods.merge_tensor

    def read(file: Path, key: str) -> torch.Tensor:
        live["reads"] += 1
        return track(real_read(file, key))

    def merge_tensor(method: str, *, models: list, base: torch.Tensor | None, **kwargs: object) -> torch.Tensor:
        for tensor, _ in models:
            track(tensor)
        if base is not None:
            track(base)
        return track(real_merge(method, models=models, base=base, **kwargs))

    monkeypatch.setattr(run, "_read_tensor", read)
    monkeypatch.setattr(methods, "merge_tensor", merge_tensor)
    config = parse_merge_config(
        f"merge_method: ties\nbase_model: {tiny_llama}\nmodels:\n"
        f"  - model: {variants['a']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
        f"  - model: {variants['b']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
    )
    out = run.merge(config, tmp_path / "m", progress=False)
    inputs, tensors = 3, len(_state(out))
    assert live["reads"] == inputs * tensors  # every tensor read once per input, never a whole model
    assert inputs + 1 <= live["peak"] <= inputs + 2, live  # one tensor per input, the result (and its cast)
    assert live["now"] == 0


MERGEKIT_YAML = Path(os.environ.get("MERGEKIT_YAML", Path(__file__).parents[1] / ".venv-mergekit/bin/mergekit-yaml"))


@pytest.mark.skipif(not MERGEKIT_YAML.exists(), reason="mergekit 0.1.5 venv not installed (make install)")
def test_whole_merges_match_mergekit_0_1_5_bit_for_bit(tmp_path: Path):
    """Gradients, filters, fallbacks, the depth of non-layer tensors, slices, an appended base and dtype rounding."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    for name, seed in (("base", 0), ("a", 1), ("b", 2)):
        torch.manual_seed(seed)
        config = LlamaConfig(
            vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=5, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=True,
        )  # fmt: skip
        AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path / name)
    base, a, b = (tmp_path / n for n in ("base", "a", "b"))
    recipes = {
        "ties": f"""
            merge_method: ties
            base_model: {base}
            models:
              - model: {a}
                parameters:
                  weight: [0.2, 0.9, 0.4]
                  density: [{{filter: self_attn, value: [0.3, 0.8]}}, {{filter: mlp, value: 0.5}}]
              - model: {b}
                parameters: {{weight: 0.6}}
            parameters: {{density: 0.7, normalize: true}}
            dtype: float32
            """,
        "slerp": f"""
            slices:
              - sources:
                  - model: {a}
                    layer_range: [0, 5]
                  - model: {b}
                    layer_range: [0, 5]
            merge_method: slerp
            base_model: {a}
            parameters:
              t:
                - filter: self_attn
                  value: [0, 0.5, 0.3, 0.7, 1]
                - filter: mlp
                  value: [1, 0.5, 0.7, 0.3, 0]
                - value: [0.2, 0.6]
            dtype: bfloat16
            """,
        "linear": f"""
            merge_method: linear
            base_model: {base}
            models:
              - model: {a}
                parameters: {{weight: [1, 3]}}
              - model: {b}
            parameters: {{weight: 0.5}}
            dtype: bfloat16
            out_dtype: float16
            """,
    }
    for name, recipe in recipes.items():
        config = _yaml(tmp_path, recipe, f"{name}.yml")
        theirs, ours = tmp_path / f"mk-{name}", tmp_path / f"al-{name}"
        done = subprocess.run(
            [str(MERGEKIT_YAML), str(config), str(theirs), "--no-copy-tokenizer"], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-2000:]
        run.merge(config, ours, progress=False)
        expected, got = _state(theirs), _state(ours)
        assert set(expected) == set(got), name
        for key, tensor in expected.items():
            assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), (name, key)


# --- atomicity -----------------------------------------------------------------------------------------------


def test_a_failing_merge_leaves_nothing(variants: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    real, calls = methods.merge_tensor, []

    def flaky(*args: object, **kwargs: object) -> torch.Tensor:
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("simulated crash half-way")
        return real(*args, **kwargs)

    monkeypatch.setattr(methods, "merge_tensor", flaky)
    config = parse_merge_config(
        f"merge_method: linear\nmodels:\n  - model: {variants['a']}\n  - model: {variants['b']}\n"
        "parameters: {weight: 1}\naloekit: {shard_size: 100KB}\n"
    )
    out = tmp_path / "merged"
    with pytest.raises(RuntimeError, match="half-way"):
        run.merge(config, out, progress=False)
    assert not out.exists() and _leftovers(out) == []


def test_a_killed_merge_leaves_no_finished_looking_output(variants: dict[str, Path], tmp_path: Path):
    config = _yaml(
        tmp_path,
        f"merge_method: linear\nmodels:\n  - model: {variants['a']}\n  - model: {variants['b']}\n"
        "parameters: {weight: 1}\naloekit: {shard_size: 100KB}\n",
    )
    out, started = tmp_path / "merged", tmp_path / "started"
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from aloekit.merge import methods, run
        real, calls = methods.merge_tensor, []
        def slow(*args, **kwargs):
            calls.append(1)
            if len(calls) == 6:
                Path(sys.argv[3]).write_text("half-way")
                time.sleep(120)
            return real(*args, **kwargs)
        methods.merge_tensor = slow
        run.merge(Path(sys.argv[1]), Path(sys.argv[2]), progress=False)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(config), str(out), str(started)])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert proc.poll() is None, "the merge subprocess ended early"
            assert time.monotonic() < deadline, "the merge subprocess never got half-way"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert not out.exists()
    partial = [tmp_path / n for n in _leftovers(out)]
    assert len(partial) == 1 and partial[0].name.startswith(".merged.partial-")  # hidden, named as unfinished
    assert list(partial[0].glob("*.safetensors"))  # it was killed while writing shards
    # The next merge into the same place succeeds and clears the dead run's leftovers.
    run.merge(config, out, progress=False)
    assert (out / "config.json").is_file() and _leftovers(out) == []


def test_existing_output_and_devices(variants: dict[str, Path], tmp_path: Path):
    config = parse_merge_config(
        f"merge_method: linear\nmodels:\n  - model: {variants['a']}\n    parameters: {{weight: 1.0}}\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="exists and is not empty"):
        run.merge(config, out, progress=False)
    assert (out / "keep.txt").read_text() == "precious"
    run.merge(config, out, progress=False, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()
    assert _leftovers(out) == []
    with pytest.raises(UserError, match="holds an input model"):
        run.merge(config, variants["a"].parent, progress=False, overwrite=True)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            run.merge(config, tmp_path / "gpu", device="cuda", progress=False)
        assert not (tmp_path / "gpu").exists()


# --- the command line -------------------------------------------------------------------------------------------


def test_aloe_merge_writes_a_model_and_bad_configs_are_one_line_errors(variants: dict[str, Path], tmp_path: Path):
    good = tmp_path / "good.yml"
    good.write_text(f"merge_method: linear\nmodels:\n  - model: {variants['a']}\n  - model: {variants['b']}\n"
                    "parameters:\n  weight: 0.5\n")  # fmt: skip
    done = aloe("merge", str(good), str(tmp_path / "out"), "--seed", "3")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out/config.json").is_file() and "merged model written to" in done.stdout
    bad = tmp_path / "bad.yml"
    bad.write_text(f"merge_method: frankenmerge\nmodels:\n  - model: {variants['a']}\n")
    failed = aloe("merge", str(bad), str(tmp_path / "out2"))
    assert_one_line_error(failed, "frankenmerge")
    assert not (tmp_path / "out2").exists()
