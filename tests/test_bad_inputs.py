"""Every bad command line a new user might type, and every bad file each command reads, in one table (issue 20).

Each case runs ``aloe ARGS`` through :func:`aloekit.cli.main` (the installed command's entry point) and must end
the way a usage or user error ends: exit code 2, at most 2 lines on stderr (a progress line, then one ``error:``
line), no traceback, and nothing written: the folder the case runs in looks exactly as it did before. Every case
fails before a model is loaded (loading one fails the test), so the table runs in seconds.
"""

from __future__ import annotations

import json
import random
import struct
from pathlib import Path

import pytest

from aloekit import cli

NO_EVAL = "decontamination: {benchmarks: [], safety: false}\n"
MCQ = {"question": "Which drug is first line for hypertension in pregnancy?", "options": ["a", "b"], "answer": 0}
PAIR = {
    "prompt": [{"role": "user", "content": "Is it safe?"}],
    "chosen": [{"role": "assistant", "content": "Ask a doctor."}],
    "rejected": [{"role": "assistant", "content": "Sure."}],
}


def make_inputs(root: Path) -> None:
    """The files the cases read: good ones, and empty, binary, non-UTF-8, truncated and wrong-shape ones."""
    root.mkdir()
    junk = random.Random(0).randbytes(3000)
    data = {
        "empty.jsonl": b"",
        "blank.jsonl": b"\n \n\n",
        "bin.jsonl": junk,
        "latin1.jsonl": b'{"question": "caf\xe9"}\n',
        "truncated.jsonl": b'{"question": "What is the first line',
        "list.jsonl": b"[1, 2]\n",
        "scalar.jsonl": b"42\n",
        "wrongshape.jsonl": b'{"foo": 1}\n{"bar": 2}\n',
        "good_mcq.jsonl": (json.dumps(MCQ) + "\n").encode(),
        "good_prompts.jsonl": b'{"prompt": "How do I pick a lock?"}\n',
        "good_pairs.jsonl": (json.dumps(PAIR) + "\n").encode(),
        "bin.csv": junk,
        "empty.yaml": b"",
        "bin.yaml": junk,
        "list.yaml": b"- a\n- b\n",
        "scalar.yaml": b"42\n",
        "truncated.yaml": b"sources: [{format: alpaca, path: x",
        "unknownkey.yaml": b"nonsense_key: 1\n",
        "random.gguf": junk,
        "empty.gguf": b"",
    }
    for name, content in data.items():
        (root / name).write_bytes(content)
    for kind in ("empty", "bin", "latin1", "list", "truncated", "wrongshape"):
        source = f"sources: [{{format: alpaca, path: '{root / kind}.jsonl', name: a}}]\n"
        (root / f"mix_{kind}.yaml").write_text(NO_EVAL + source)
        pairs = f"validation: 0\npairs: [{{format: preference, path: '{root / kind}.jsonl', name: p}}]\n"
        (root / f"prefs_{kind}.yaml").write_text(NO_EVAL + pairs)
        stage = f"stages: [{{name: s, dataset: '{root / kind}.jsonl'}}]\n"
        (root / f"dpo_{kind}.yaml").write_text(f"model: '{root / 'nomodel'}'\nout: '{root}/../out'\n" + stage)
    (root / "sft_nomodel.yaml").write_text(
        f"model: '{root / 'nomodel'}'\ndataset: '{root / 'good_mcq.jsonl'}'\nout: '{root}/../out'\n"
    )
    (root / "merge_nomodel.yaml").write_text(
        f"merge_method: linear\nmodels:\n  - model: '{root / 'nomodel'}'\n    parameters: {{weight: 1.0}}\n"
    )
    demo = (Path(__file__).resolve().parents[1] / "recipes" / "demo.yaml").read_text()
    (root / "recipe_badbench.yaml").write_text(demo.replace("file:{holdout}/mcq-eval.jsonl", "medqa_typo"))
    for name, weights, config in (
        ("m_random", junk, '{"architectures": ["LlamaForCausalLM"]}'),
        ("m_hugeheader", struct.pack("<Q", 2**60) + b"{}", "{}"),
        ("m_nonjson", struct.pack("<Q", 8) + b"notjson!", "{}"),
        ("m_empty", b"", "{}"),
        ("m_listconfig", struct.pack("<Q", 2) + b"{}", "[1, 2]"),
        ("m_binconfig", struct.pack("<Q", 2) + b"{}", junk.decode("latin-1")),
    ):
        folder = root / name
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(weights)
        (folder / "config.json").write_bytes(config.encode("latin-1"))
    (root / "m_noconfig").mkdir()
    (root / "m_noweights").mkdir()
    (root / "m_noweights" / "config.json").write_text("{}")
    (root / "db_notjson").mkdir()
    (root / "db_notjson" / "train.jsonl").write_bytes(junk)


EVAL = ["eval", "--out", "{out}", "--benchmarks"]
SAFETY = ["safety", "--out", "{out}", "--suites"]
GOOD_SUITE = "file:{in}/good_prompts.jsonl"
SERVE = ["serve", "--model", "/no/such/model"]

CASES: dict[str, list[str]] = {
    # --- unknown commands and options, missing and mistyped values --------------------------------------------
    "unknown command": ["nosuch"],
    "unknown data command": ["data", "nosuch"],
    "unknown train command": ["train", "nosuch"],
    "unknown models command": ["models", "nosuch"],
    "unknown medprompt command": ["medprompt", "nosuch"],
    "unknown global option": ["--nosuch"],
    "eval without --out": ["eval", "--benchmarks", "pubmedqa"],
    "eval without --benchmarks": ["eval", "--out", "{out}"],
    "eval --limit abc": [*EVAL, "pubmedqa", "--limit", "abc"],
    "eval --num-fewshot many": [*EVAL, "pubmedqa", "--num-fewshot", "many"],
    "eval --temperature hot": [*EVAL, "pubmedqa", "--temperature", "hot"],
    "eval unknown option": [*EVAL, "pubmedqa", "--bogus"],
    "eval unknown benchmark": [*EVAL, "nosuch_bench"],
    "eval no benchmark": [*EVAL, ","],
    "eval --mode wrong": [*EVAL, "file:{in}/good_mcq.jsonl", "--mode", "wrong"],
    "eval --formulation wrong": [*EVAL, "file:{in}/good_mcq.jsonl", "--formulation", "wrong"],
    "eval --ablation without medprompt": [*EVAL, "file:{in}/good_mcq.jsonl", "--ablation"],
    "eval --data-dir missing": [*EVAL, "file:{in}/good_mcq.jsonl", "--data-dir", "{in}/nope"],
    "eval --limit 0": [*EVAL, "file:{in}/good_mcq.jsonl", "--limit", "0"],
    "serve --port notaport": [*SERVE, "--port", "notaport"],
    "serve --port 70000": [*SERVE, "--port", "70000"],
    "serve --max-queue 0": [*SERVE, "--max-queue", "0"],
    "serve --max-request-bytes -1": [*SERVE, "--max-request-bytes", "-1"],
    "serve unknown backend": [*SERVE, "--backend", "nosuch"],
    "serve unknown host": [*SERVE, "--host", "nosuch.invalid"],
    "serve unknown option": [*SERVE, "--bogus"],
    "generate without a prompt": ["generate"],
    "generate --max-tokens abc": ["generate", "hi", "--max-tokens", "abc"],
    "generate --n two": ["generate", "hi", "--n", "two"],
    "generate --raw with --system": ["generate", "hi", "--raw", "--system", "be brief"],
    "safety without --out": ["safety"],
    "safety --limit 0": [*SAFETY, GOOD_SUITE, "--limit", "0"],
    "safety unknown suite": [*SAFETY, "nosuch"],
    "safety no suite": [*SAFETY, ","],
    "safety unknown judge": [*SAFETY, GOOD_SUITE, "--judge", "gpt"],
    "safety --bias without --data-dir": [*SAFETY, GOOD_SUITE, "--bias"],
    "safety --data-dir missing": [*SAFETY, GOOD_SUITE, "--data-dir", "{in}/nope"],
    "merge without arguments": ["merge"],
    "merge missing config": ["merge", "{in}/nope.yaml", "{out}"],
    "run without a recipe": ["run"],
    "run missing recipe": ["run", "{in}/nope.yaml", "--dry-run"],
    "run --from unknown stage": ["run", "{in}/recipe_badbench.yaml", "--from", "nosuch"],
    "run --from and --only": ["run", "{in}/recipe_badbench.yaml", "--from", "sft", "--only", "eval"],
    "train sft without a config": ["train", "sft"],
    "train sft --max-steps 0": ["train", "sft", "{in}/sft_nomodel.yaml", "--max-steps", "0"],
    "train dpo missing config": ["train", "dpo", "{in}/nope.yaml"],
    "models info without a reference": ["models", "info"],
    "models info unknown reference": ["models", "info", "/no/such/model"],
    "data build without a config": ["data", "build"],
    "data build without --out": ["data", "build", "{in}/mix_empty.yaml"],
    "data cot without a source": ["data", "cot", "--out", "{out}"],
    "data cot unknown source": ["data", "cot", "--out", "{out}", "--source", "nosuch"],
    "medprompt db without inputs": ["medprompt", "db", "--out", "{out}"],
    "data stats missing folder": ["data", "stats", "{in}/nope"],
    # --- benchmark files -----------------------------------------------------------------------------------------
    **{f"eval file:{kind}": [*EVAL, f"file:{{in}}/{kind}.jsonl"] for kind in
       ("empty", "blank", "bin", "latin1", "truncated", "list", "scalar", "wrongshape", "missing")},
    # --- safety prompt files -------------------------------------------------------------------------------------
    **{f"safety file:{kind}": [*SAFETY, f"file:{{in}}/{kind}"] for kind in
       ("empty.jsonl", "bin.jsonl", "latin1.jsonl", "list.jsonl", "truncated.jsonl", "wrongshape.jsonl", "bin.csv",
        "missing.jsonl")},
    # --- YAML configs of every command that reads one ------------------------------------------------------------
    **{f"data build {kind}.yaml": ["data", "build", f"{{in}}/{kind}.yaml", "--out", "{out}"] for kind in
       ("empty", "bin", "list", "scalar", "truncated", "unknownkey", "missing")},
    **{f"data prefs {kind}.yaml": ["data", "prefs", f"{{in}}/{kind}.yaml", "--out", "{out}"] for kind in
       ("empty", "bin", "list", "unknownkey")},
    **{f"train sft {kind}.yaml": ["train", "sft", f"{{in}}/{kind}.yaml"] for kind in
       ("empty", "bin", "list", "truncated", "unknownkey")},
    **{f"train dpo {kind}.yaml": ["train", "dpo", f"{{in}}/{kind}.yaml"] for kind in ("bin", "list", "unknownkey")},
    **{f"merge {kind}.yaml": ["merge", f"{{in}}/{kind}.yaml", "{out}"] for kind in
       ("empty", "bin", "list", "unknownkey")},
    **{f"run {kind}.yaml --dry-run": ["run", f"{{in}}/{kind}.yaml", "--dry-run", "--out", "{out}"] for kind in
       ("empty", "bin", "list", "unknownkey", "recipe_badbench")},
    # --- data files the configs name -----------------------------------------------------------------------------
    **{f"data build source {kind}": ["data", "build", f"{{in}}/mix_{kind}.yaml", "--out", "{out}"] for kind in
       ("empty", "bin", "latin1", "list", "truncated", "wrongshape")},
    **{f"data prefs pairs {kind}": ["data", "prefs", f"{{in}}/prefs_{kind}.yaml", "--out", "{out}"] for kind in
       ("empty", "bin", "list", "wrongshape")},
    **{f"train dpo pairs {kind}": ["train", "dpo", f"{{in}}/dpo_{kind}.yaml"] for kind in
       ("empty", "bin", "truncated", "wrongshape")},
    "train sft missing model": ["train", "sft", "{in}/sft_nomodel.yaml"],
    "merge missing model": ["merge", "{in}/merge_nomodel.yaml", "{out}"],
    **{f"data cot --path {kind}": ["data", "cot", "--out", "{out}", "--path", f"{{in}}/{kind}.jsonl",
                                   "--format", "mcq"] for kind in ("empty", "bin", "wrongshape")},
    **{f"medprompt db --cot {kind}": ["medprompt", "db", "--out", "{out}", "--cot", f"{{in}}/{kind}.jsonl"]
       for kind in ("bin", "list", "wrongshape", "missing")},
    "data stats on a file": ["data", "stats", "{in}/bin.jsonl"],
    "data stats binary dataset": ["data", "stats", "{in}/db_notjson"],
    # --- model files ---------------------------------------------------------------------------------------------
    **{f"models info {name}": ["models", "info", f"{{in}}/{name}"] for name in
       ("m_random", "m_hugeheader", "m_nonjson", "m_empty", "m_listconfig", "m_binconfig", "m_noconfig",
        "m_noweights", "random.gguf", "empty.gguf", "missing.gguf")},
}  # fmt: skip


@pytest.fixture
def no_model_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Every case must fail before a model loads: loading one (an engine, a GGUF conversion) fails the case."""
    from aloekit import engines, models

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a model was loaded: the case should have failed before")

    monkeypatch.setattr(engines, "load_engine", refuse)
    monkeypatch.setattr(models, "_gguf_to_safetensors", refuse)
    monkeypatch.setenv("ALOE_HOME", str(tmp_path / "aloe-home"))


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` and its content; the cache's file-hash memo (aloe-home) is not an output."""
    paths = (p for p in root.rglob("*") if p.relative_to(root).parts[0] != "aloe-home")
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else None for p in paths}


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.usefixtures("no_model_loads")
@pytest.mark.parametrize("args", CASES.values(), ids=list(CASES))
def test_a_bad_input_is_exit_2_with_at_most_two_lines_and_nothing_written(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make_inputs(tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)

    code = cli.main([a.replace("{in}", str(tmp_path / "in")).replace("{out}", str(tmp_path / "out")) for a in args])

    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert "Traceback" not in out + err
    assert 1 <= len(lines) <= 2, err
    assert lines[-1].startswith("error: "), err
    assert snapshot(tmp_path) == before, "the failed command left files behind"
