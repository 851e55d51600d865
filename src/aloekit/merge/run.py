"""Execute a merge plan tensor by tensor, streaming the result into safetensors shards.

Memory: for each output tensor, each distinct input's tensor is read on its own (``safetensors.safe_open``, opened
for that one read so no mapping of a whole shard stays resident), merged, cast and written, and every reference
is dropped before the next tensor is read. At any time at most one tensor per input plus the merge result and
its cast copy are alive (plus the merge method's own temporaries), whatever the model size. The output shards
are laid out by the plan (names, shapes and offsets are all known from the headers), so each shard's safetensors
header is written first and tensors are appended as they are computed: no shard is ever buffered in memory.

Atomicity: everything is written into a hidden sibling folder (``.NAME.partial-PID-XXXX``) that is renamed to
``out_dir`` only once complete. A merge that fails is cleaned up; one that is killed leaves only that hidden
folder, removed by the next merge into the same place once its process is gone.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import json
import os
import shutil
import struct
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import aloekit
from aloekit import io, models
from aloekit.errors import UserError
from aloekit.merge import methods
from aloekit.merge.config import DTYPES, MergeConfig, load_merge_config
from aloekit.merge.plan import MergePlan, TensorJob, plan
from aloekit.merge.tokenizer import TOKENIZER_FILES
from aloekit.progress import progress_bar
from aloekit.provenance import package_versions
from aloekit.report.card import merge_card, write_card

if TYPE_CHECKING:
    import torch

RECORD = "aloe_merge.json"
CONFIG_COPY = "mergekit_config.yml"


def tensor_seed(seed: int, name: str) -> int:
    """A per-tensor seed from the run seed and the tensor name: stable across runs, processes and tensor order."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def _read_tensor(file: Path, key: str) -> torch.Tensor:
    """Materialise one tensor of a safetensors file (the single place merging reads weights).

    The file is opened for this one read: ``safe_open`` memory-maps the whole file, and pages read through a
    mapping count as the process's memory for as long as it stays open, so a handle kept open across a merge
    would make the resident size grow towards the size of every input. Opening parses only the JSON header.
    """
    from safetensors import safe_open

    with safe_open(str(file), framework="pt", device="cpu") as handle:
        return handle.get_tensor(key)


def merge(
    config: MergeConfig | str | Path,
    out_dir: str | Path,
    *,
    device: str | None = None,
    seed: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    shard_size: int | None = None,
) -> Path:
    """Merge the models of ``config`` (a :class:`MergeConfig` or a mergekit YAML path) into ``out_dir``.

    ``device`` (default: the config's ``aloekit.device``, else cpu) is where the tensor math runs; ``seed``
    (default: ``aloekit.seed``, else 0) seeds random methods per tensor. Everything is validated before anything
    is written; an existing non-empty ``out_dir`` is refused unless ``overwrite``. Returns ``out_dir``.
    """
    cfg = config if isinstance(config, MergeConfig) else load_merge_config(config)
    out = Path(out_dir).expanduser().absolute()
    _check_out_dir(out, overwrite)
    torch_device = _device(device or cfg.aloekit.device or "cpu")
    merge_plan = plan(cfg, allow_pickle=allow_pickle, trust_remote_code=trust_remote_code, shard_size=shard_size)
    _check_not_an_input(out, merge_plan)
    run_seed = seed if seed is not None else (cfg.aloekit.seed if cfg.aloekit.seed is not None else 0)

    started = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    # The pid in the temporary folder's name lets a later merge remove it once this process is gone.
    with io.atomic_folder(out, prefix=f".{out.name}.partial-{os.getpid()}-", fsync=True) as tmp:
        write_tensors(merge_plan, tmp, device=torch_device, seed=run_seed, progress=progress)
        _write_side_files(merge_plan, tmp)
        _write_card(merge_plan, tmp, out.name, run_seed)
        _write_record(merge_plan, tmp, run_seed, str(torch_device), time.perf_counter() - started)
        if out.is_dir() and any(out.iterdir()) and not overwrite:  # something appeared there while we merged
            raise UserError(f"output folder {out} was filled during the merge: choose another folder")
    return out


# --- checks --------------------------------------------------------------------------------------------------


def _check_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder: choose another output folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"output folder {out} exists and is not empty: choose another folder or pass --overwrite")


def _check_not_an_input(out: Path, merge_plan: MergePlan) -> None:
    folders = [m.path for m in merge_plan.inputs] + [merge_plan.tokenizer_source.path]
    real = out.resolve()
    for folder in folders:
        if real == folder or real in folder.parents:
            raise UserError(f"output folder {out} holds an input model ({folder}): choose another output folder")


def _device(name: str) -> torch.device:
    import torch

    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"device '{name}' asked for, but torch {torch.__version__} sees no CUDA GPU: use cpu")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(f"device '{name}' does not exist: {torch.cuda.device_count()} CUDA GPU(s) visible")
        return dev
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise UserError("device 'mps' asked for, but it is not available: use cpu")
        return torch.device("mps")
    raise UserError(f"unknown device '{name}': use cpu, cuda or cuda:N")


# --- tensors -------------------------------------------------------------------------------------------------


class _ShardWriter:
    """Writes one safetensors file whose header is known in advance, appending tensors in order."""

    def __init__(self, path: Path, jobs: list[TensorJob], dtype_code: str) -> None:
        header: dict[str, Any] = {
            job.name: {
                "dtype": dtype_code,
                "shape": list(job.shape),
                "data_offsets": [job.offset, job.offset + job.nbytes],
            }
            for job in jobs
        }
        header["__metadata__"] = {"format": "pt"}
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        self.path = path
        self.data_start = 8 + len(raw)
        self.size = self.data_start + sum(job.nbytes for job in jobs)
        self.file: IO[bytes] = path.open("wb")
        self.file.write(struct.pack("<Q", len(raw)))
        self.file.write(raw)

    def write(self, job: TensorJob, tensor: torch.Tensor) -> None:
        import torch

        if self.file.tell() - self.data_start != job.offset:
            raise RuntimeError(f"internal error: tensor {job.name} written out of order in {self.path.name}")
        flat = tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        if flat.numel() != job.nbytes:
            raise RuntimeError(f"internal error: tensor {job.name} has {flat.numel()} bytes, planned {job.nbytes}")
        self.file.write(flat.numpy().data)

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if self.path.stat().st_size != self.size:
            raise RuntimeError(f"internal error: {self.path.name} is {self.path.stat().st_size} bytes, not {self.size}")

    def abort(self) -> None:
        self.file.close()


def write_tensors(
    merge_plan: MergePlan, folder: Path, *, device: torch.device | str = "cpu", seed: int = 0, progress: bool = False
) -> None:
    """Compute every job of ``merge_plan`` and write the output shards (and their index) into ``folder``."""
    import torch

    dev = torch.device(device)
    out_dtype = getattr(torch, merge_plan.out_dtype)
    compute_dtype = getattr(torch, merge_plan.compute_dtype) if merge_plan.compute_dtype else None
    code = DTYPES[merge_plan.out_dtype]
    entries, base, base_index = merge_plan.entries, merge_plan.base, merge_plan.base_index
    label = f"merging ({merge_plan.method})"
    # Writing a tensor (file I/O, which releases the GIL) overlaps with computing the next one. At most one write
    # is in flight, so memory grows by one output tensor at most.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aloe-merge-write")
    pending: Future[None] | None = None
    with torch.no_grad(), progress_bar(progress, len(merge_plan.jobs), label) as step:
        writer: _ShardWriter | None = None
        try:
            for shard in merge_plan.shards:
                jobs = [merge_plan.jobs[i] for i in shard.jobs]
                writer = _ShardWriter(folder / shard.name, jobs, code)
                for job in jobs:
                    result = _merge_one(merge_plan, job, dev, compute_dtype, seed, entries, base, base_index)
                    if pending is not None:
                        pending.result()  # re-raises a failed write here
                    pending = pool.submit(writer.write, job, result.to(out_dtype))
                    del result
                    step(1)
                if pending is not None:
                    pending.result()
                    pending = None
                writer.close()
                writer = None
        finally:
            if pending is not None:
                pending.exception()  # wait for it: the file must not be closed under a running write
            pool.shutdown(wait=True)
            if writer is not None:
                writer.abort()
    if len(merge_plan.shards) > 1:
        index = {
            "metadata": {"total_size": merge_plan.total_bytes},
            "weight_map": {job.name: merge_plan.shards[job.shard].name for job in merge_plan.jobs},
        }
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def _merge_one(
    merge_plan: MergePlan,
    job: TensorJob,
    dev: torch.device,
    compute_dtype: torch.dtype | None,
    seed: int,
    entries: tuple[int, ...],
    base: int | None,
    base_index: int | None,
) -> torch.Tensor:
    import torch

    # One read per distinct (file, key): a model listed twice, or two references to one folder, is read once.
    loaded: dict[tuple[Path, str], torch.Tensor] = {}
    tensors = []
    for source in job.sources:
        key = (source.file, source.key)
        if key not in loaded:
            tensor = _read_tensor(source.file, source.key).to(dev)
            loaded[key] = tensor.to(compute_dtype) if compute_dtype is not None else tensor
            del tensor
        tensors.append(loaded[key])
    # mergekit returns each merge in the dtype the inputs were read in (``dtype:``, else their promoted dtype)
    # and only then casts to out_dtype: round the same way, so outputs match it bit for bit.
    read_dtype = compute_dtype or functools.reduce(torch.promote_types, (t.dtype for t in loaded.values()))
    del loaded
    generator = None
    if merge_plan.random:
        generator = torch.Generator(device=dev)
        generator.manual_seed(tensor_seed(seed, job.name))
    result = methods.merge_tensor(
        merge_plan.method,
        models=[(tensors[i], job.model_params[j]) for j, i in enumerate(entries)],
        base=tensors[base] if base is not None else None,
        base_index=base_index,
        params=job.global_params,
        generator=generator,
    )
    del tensors
    if tuple(result.shape) != job.shape:
        raise RuntimeError(f"internal error: merging {job.name} gave shape {list(result.shape)}, not {list(job.shape)}")
    return result.to(read_dtype)


# --- side files ----------------------------------------------------------------------------------------------


def _set_dtype(cfg: dict[str, Any], dtype: str) -> None:
    for key in ("dtype", "torch_dtype"):
        if key in cfg or key == "dtype":
            cfg[key] = dtype
    for value in cfg.values():
        if isinstance(value, dict) and ("dtype" in value or "torch_dtype" in value):
            _set_dtype(value, dtype)


def _write_side_files(merge_plan: MergePlan, folder: Path) -> None:
    cfg = json.loads(json.dumps(merge_plan.config_source.config))
    _set_dtype(cfg, merge_plan.out_dtype)
    (folder / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    generation = merge_plan.config_source.path / "generation_config.json"
    if generation.is_file():
        shutil.copyfile(generation, folder / generation.name)
    tok = merge_plan.tokenizer_source.path
    names = [n for n in TOKENIZER_FILES if (tok / n).is_file()] + sorted(p.name for p in tok.glob("*.tiktoken"))
    for name in names:
        shutil.copyfile(tok / name, folder / name)
    if merge_plan.chat_template is not None:
        (folder / "chat_template.jinja").write_text(merge_plan.chat_template)
        (folder / "chat_template.json").unlink(missing_ok=True)
        tok_cfg_path = folder / "tokenizer_config.json"
        if tok_cfg_path.is_file():
            tok_cfg = json.loads(tok_cfg_path.read_text())
            if tok_cfg.pop("chat_template", None) is not None:
                tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
    (folder / CONFIG_COPY).write_text(merge_plan.config.to_yaml())


def _write_card(merge_plan: MergePlan, folder: Path, name: str, seed: int) -> None:
    cfg = merge_plan.config
    base = merge_plan.inputs[merge_plan.base].reference if merge_plan.base is not None else None
    merged = [(merge_plan.inputs[i].reference, p) for i, (_, p) in zip(merge_plan.entries, cfg.entries, strict=True)]
    card = merge_card(
        name=name,
        version=aloekit.__version__,
        method=merge_plan.method,
        base=base,
        models=merged,
        parameters=cfg.parameters or {},
        out_dtype=str(merge_plan.out_dtype),
        seed=seed if merge_plan.random else None,
        date=_dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        config_yaml=cfg.to_yaml(),
    )
    write_card(folder, card)


def _write_record(merge_plan: MergePlan, folder: Path, seed: int, device: str, seconds: float) -> None:
    record = {
        "kind": "merge",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "method": merge_plan.method,
        "config": merge_plan.config.model_dump(mode="json"),
        "config_yaml": merge_plan.config.to_yaml(),
        "inputs": [
            {
                "reference": m.reference,
                "path": str(m.path),
                "fingerprint": models.fingerprint(m.resolved),
            }
            for m in merge_plan.inputs
        ],
        "base_model": merge_plan.inputs[merge_plan.base].reference if merge_plan.base is not None else None,
        "seed": seed,
        "random_method": merge_plan.random,
        "device": device,
        "out_dtype": merge_plan.out_dtype,
        "tensors": len(merge_plan.jobs),
        "shards": [s.name for s in merge_plan.shards],
        "bytes": merge_plan.total_bytes,
        "warnings": list(merge_plan.warnings),
        "versions": package_versions("torch", "transformers", "safetensors"),
        "seconds": round(seconds, 3),
    }
    (folder / RECORD).write_text(json.dumps(record, indent=2) + "\n")


# --- publishing ----------------------------------------------------------------------------------------------


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(out: Path) -> None:
    """Remove hidden leftovers of earlier merges into ``out`` whose process no longer runs."""
    for kind in ("partial", "old"):
        for leftover in out.parent.glob(f".{out.name}.{kind}-*"):
            pid_text = leftover.name[len(f".{out.name}.{kind}-") :].split("-", 1)[0]
            if leftover.is_dir() and pid_text.isdigit() and not _pid_alive(int(pid_text)):
                shutil.rmtree(leftover, ignore_errors=True)
