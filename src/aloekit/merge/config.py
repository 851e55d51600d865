"""mergekit YAML configs, accepted unchanged, plus optional aloekit keys under ``aloekit:``.

A config written for ``mergekit-yaml`` 0.1.5 loads as is::

    merge_method: dare_ties
    base_model: org/base
    models:
      - model: org/medical-sft
        parameters: {weight: 0.5, density: 0.5}
      - model: org/general-sft
        parameters:
          weight: [0.3, 0.5, 0.7]          # a gradient over layer depth
          density:
            - filter: self_attn             # first matching rule wins
              value: 0.6
            - value: 0.4                    # no filter: the fallback
    parameters: {int8_mask: true}
    dtype: bfloat16
    aloekit: {seed: 0, shard_size: 2GB}    # ours; mergekit would ignore it, we validate it

Parameter values resolve per tensor exactly as mergekit 0.1.5 resolves them
(:func:`aloekit.merge.settings.evaluate_setting`): a scalar as is; a list of numbers is a gradient whose anchors
span layers 0..N-1 (linear interpolation between the two nearest anchors); a list of booleans or words picks the
anchor at ``int(t * (len - 1))``; a list of ``{filter, value}`` rules takes the first rule whose filter is a
substring of the tensor name (no filter, or ``*``, always matches), and its value may itself be a gradient. A
setting that resolves to nothing (no rule matched) falls through to the next scope: a model's own parameters, then
the slice's, then the top-level ``parameters:``, then the method's default.

Refused with a one-line error (never silently ignored): unknown keys, unknown methods, ``modules:``, LoRA model
references (``model+lora``), ``tokenizer_source: union`` and ``tokenizer.tokens``/``pad_to_multiple_of``
(tokenizer merging is not supported yet), and slices that pick layer ranges (checked when planning, where layer
counts are known).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, field_validator
from pydantic import model_validator as _model_validator

from aloekit.config import node_line, read_config_text, read_yaml
from aloekit.errors import UserError
from aloekit.merge.settings import Parameters

# --- dtypes --------------------------------------------------------------------------------------------------

DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64"}
"""Output/compute dtype names (as mergekit and torch spell them) -> safetensors dtype codes."""

_DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "f32": "float32",
    "fp16": "float16",
    "half": "float16",
    "f16": "float16",
    "bf16": "bfloat16",
    "fp64": "float64",
    "double": "float64",
}

# mergekit methods that aloekit does not implement (yet): named in the error, so a user knows it is not a typo.
MERGEKIT_ONLY_METHODS = (
    "passthrough",
    "della",
    "della_linear",
    "nuslerp",
    "multislerp",
    "karcher",
    "sce",
    "nearswap",
    "arcee_fusion",
    "ram",
    "ramplus_tl",
)

BUILTIN_CHAT_TEMPLATES = {
    # The ChatML convention (<|im_start|>role ... <|im_end|>), as commonly shipped with Hugging Face tokenizers.
    "chatml": (
        "{% for message in messages %}"
        "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    ),
}
MERGEKIT_TEMPLATE_NAMES = ("alpaca", "exaone", "llama3", "mistral")


def dtype_name(value: str) -> str:
    """Normalise a dtype name (``torch.bfloat16``, ``bf16``, ``bfloat16``) to ``bfloat16``; ValueError if unknown."""
    name = value.strip().lower().removeprefix("torch.")
    name = _DTYPE_ALIASES.get(name, name)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype '{value}': use one of {', '.join(DTYPES)}")
    return name


def parse_size(value: int | str) -> int:
    """Bytes from ``2GB``, ``500MB``, ``1.5GiB`` or a plain integer."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string like 2GB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("a size must be positive")
        return value
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?)b?\s*", str(value).lower())
    if not match:
        raise ValueError(f"cannot read size '{value}': use bytes or a string like 2GB, 500MB, 1.5GiB")
    number, unit, binary = match.groups()
    scale = (1024 if binary else 1000) ** " kmgt".index(unit or " ")
    size = int(float(number) * scale)
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


# --- the config ----------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    # Unknown keys are typos: refuse them instead of silently ignoring a setting (mergekit would ignore them).
    model_config = ConfigDict(extra="forbid", frozen=True)


def _model_ref(value: object) -> object:
    """A model reference: a string (``org/name``, ``org/name@rev``, a folder) or mergekit's dict form."""
    if isinstance(value, Mapping):
        if value.get("lora"):
            raise ValueError("LoRA model references are not supported yet: merge the adapter into its model first")
        if value.get("override_architecture"):
            raise ValueError("override_architecture is not supported")
        inner = value.get("model", value)
        if isinstance(inner, Mapping) and isinstance(inner.get("path"), str):
            path, revision = inner["path"], inner.get("revision")
            return f"{path}@{revision}" if revision else path
        if isinstance(inner, str):
            value = inner
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a model is a Hub id (org/name), a folder, a .gguf file or an aloekit alias")
    if "+" in value:
        raise ValueError(
            f"'{value}' names a LoRA adapter (model+lora), which is not supported yet: "
            "merge the adapter into its model first"
        )
    if value.count("@") > 1:
        raise ValueError(f"'{value}' has more than one @revision")
    return value.strip()


ModelRef = Annotated[str, BeforeValidator(_model_ref)]


class ModelEntry(_Strict):
    """One entry of ``models:``: a model and its own parameters."""

    model: ModelRef = Field(description="The model: Hub id, folder, .gguf file or alias.")
    parameters: Parameters | None = Field(None, description="This model's parameters (weight, density, ...).")


class SliceSource(_Strict):
    """One source of a mergekit output slice."""

    model: ModelRef
    layer_range: tuple[int, int] = Field(description="[first, end) layers taken from this model.")
    parameters: Parameters | None = None


class OutputSlice(_Strict):
    """A mergekit output slice; aloekit supports one slice whose sources each span all their layers."""

    sources: list[SliceSource] = Field(min_length=1)
    base_model: ModelRef | None = None
    residual_weight: float | None = None
    parameters: Parameters | None = None

    @field_validator("residual_weight")
    @classmethod
    def _no_residual(cls, value: float | None) -> float | None:
        if value is not None:
            raise ValueError("residual_weight is not supported yet: remove it")
        return value


class TokenizerSpec(_Strict):
    """mergekit's ``tokenizer:`` block; only ``source`` (base or a model) is supported."""

    source: str = Field("union", description="'base', a model, or 'union' (refused: tokenizer merging).")
    tokens: dict[str, Any] | None = None
    pad_to_multiple_of: int | None = None

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, value: object) -> object:
        return _tokenizer_source(value)

    @field_validator("tokens", "pad_to_multiple_of")
    @classmethod
    def _unsupported(cls, value: object) -> object:
        if value is not None:
            raise ValueError("tokenizer surgery (tokens, pad_to_multiple_of) is not supported yet: remove it")
        return value


def _tokenizer_source(value: object) -> object:
    if value == "union":
        raise ValueError(
            "tokenizer_source 'union' (merging vocabularies) is not supported yet: use 'base' or name one model"
        )
    return value if value == "base" else _model_ref(value)


class AloeOptions(_Strict):
    """aloekit's own keys, under ``aloekit:`` (mergekit has no such section)."""

    seed: int | None = Field(None, description="Seed for random methods (DARE); default 0. The CLI flag wins.")
    device: str | None = Field(None, description="Where the tensor math runs: cpu (default) or cuda[:N].")
    shard_size: int = Field(2_000_000_000, description="Largest output shard in bytes; accepts '2GB', '500MB'.")

    @field_validator("shard_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        return parse_size(value)  # type: ignore[arg-type]

    @field_validator("device")
    @classmethod
    def _device(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"cpu|cuda(:\d+)?|mps", value):
            raise ValueError(f"unknown device '{value}': use cpu, cuda or cuda:N")
        return value


class MergeConfig(_Strict):
    """A mergekit merge configuration (``mergekit-yaml`` format), plus ``aloekit:`` options."""

    merge_method: str = Field(description="linear, task_arithmetic, ties, dare_ties, dare_linear, breadcrumbs, ...")
    base_model: ModelRef | None = Field(None, description="The model task vectors are taken against.")
    models: list[ModelEntry] | None = Field(None, description="The models to merge, with per-model parameters.")
    slices: list[OutputSlice] | None = Field(None, description="mergekit slices: one full-depth slice supported.")
    modules: dict[str, Any] | None = Field(None, description="mergekit modules: not supported yet.")
    parameters: Parameters | None = Field(None, description="Method-level parameters, and per-model fallbacks.")
    dtype: str | None = Field(None, description="Precision inputs are read in (and the output's, by default).")
    out_dtype: str | None = Field(None, description="Output precision; default dtype, else the base model's.")
    tokenizer_source: str | None = Field(None, description="'base' or a model; default the base (or first) model.")
    tokenizer: TokenizerSpec | None = Field(None, description="mergekit's tokenizer block (source only).")
    chat_template: str | None = Field(None, description="'auto', 'chatml' or a Jinja template; default: source's.")
    aloekit: AloeOptions = Field(default_factory=AloeOptions, description="aloekit options (seed, device, ...).")

    _source_text: str | None = PrivateAttr(None)
    _source_path: Path | None = PrivateAttr(None)

    @field_validator("merge_method")
    @classmethod
    def _method(cls, value: str) -> str:
        from aloekit.merge.methods import METHODS

        if value not in METHODS:
            known = ", ".join(METHODS)
            if value in MERGEKIT_ONLY_METHODS:
                raise ValueError(f"merge_method '{value}' is not supported yet; supported: {known}")
            raise ValueError(f"unknown merge_method '{value}'; known: {known}")
        return value

    @field_validator("dtype", "out_dtype")
    @classmethod
    def _dtype(cls, value: str | None) -> str | None:
        return None if value is None else dtype_name(value)

    @field_validator("tokenizer_source", mode="before")
    @classmethod
    def _tok_source(cls, value: object) -> object:
        return None if value is None else _tokenizer_source(value)

    @field_validator("modules")
    @classmethod
    def _no_modules(cls, value: object) -> object:
        if value:
            raise ValueError("'modules' (per-module merges of multimodal models) is not supported yet: use 'models'")
        return value

    @field_validator("chat_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None or value == "auto" or value in BUILTIN_CHAT_TEMPLATES:
            return value
        if value in MERGEKIT_TEMPLATE_NAMES:
            raise ValueError(
                f"the built-in chat template '{value}' is not bundled with aloekit yet: use 'auto', 'chatml' "
                "or paste the Jinja template text"
            )
        if len(value) < 20 or "{" not in value:
            raise ValueError(f"invalid chat_template '{value}': use 'auto', 'chatml' or a Jinja template")
        return value

    @_model_validator(mode="after")
    def _inputs(self) -> MergeConfig:
        if self.models and self.slices:
            raise ValueError("give either 'models' or 'slices', not both")
        if not self.models and not self.slices:
            raise ValueError("no models to merge: add a 'models:' list of {model: ..., parameters: ...}")
        if self.tokenizer_source is not None and self.tokenizer is not None:
            raise ValueError("give either 'tokenizer_source' or 'tokenizer', not both")
        return self

    # --- normalised views, shared by the planner and the model card ---

    @property
    def source_text(self) -> str | None:
        """The YAML exactly as written, when loaded from a file or string."""
        return self._source_text

    @property
    def source_path(self) -> Path | None:
        return self._source_path

    @property
    def entries(self) -> list[tuple[str, dict[str, Any] | None]]:
        """(model, its own parameters) for each model to merge, in order: ``models:`` or the slice's sources."""
        if self.models:
            return [(m.model, m.parameters) for m in self.models]
        assert self.slices
        return [(s.model, s.parameters) for s in self.slices[0].sources]

    @property
    def effective_base(self) -> str | None:
        if self.slices and self.slices[0].base_model:
            return self.slices[0].base_model
        return self.base_model

    @property
    def slice_parameters(self) -> dict[str, Any] | None:
        return self.slices[0].parameters if self.slices else None

    @property
    def effective_tokenizer_source(self) -> str | None:
        return self.tokenizer.source if self.tokenizer is not None else self.tokenizer_source

    def to_yaml(self) -> str:
        """The YAML as given, or (for a config built in code) a mergekit-style dump of it."""
        if self._source_text is not None:
            return self._source_text
        data = self.model_dump(mode="json", exclude_none=True, exclude_defaults=True)
        return yaml.safe_dump(data, sort_keys=False)


# --- loading -------------------------------------------------------------------------------------------------

_NESTED: dict[tuple[type[BaseModel], str], type[BaseModel]] = {
    (MergeConfig, "models"): ModelEntry,
    (MergeConfig, "slices"): OutputSlice,
    (OutputSlice, "sources"): SliceSource,
    (MergeConfig, "tokenizer"): TokenizerSpec,
    (MergeConfig, "aloekit"): AloeOptions,
}


def _known_keys(loc: Sequence[int | str]) -> list[str] | None:
    cls: type[BaseModel] = MergeConfig
    for part in loc:
        if isinstance(part, int):
            continue
        nested = _NESTED.get((cls, part))
        if nested is None:
            return None
        cls = nested
    return list(cls.model_fields)


def _loc_text(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _clean_message(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    return message


def parse_merge_config(text: str, *, source: str | Path = "<config>") -> MergeConfig:
    """Parse mergekit YAML text; UserError (naming ``source`` and the line) if it is not a valid config."""
    where = str(source)
    data, root = read_yaml(text, where)
    if data is None:
        raise UserError(f"{where} is empty: write a mergekit config (merge_method, models, ...)")
    if not isinstance(data, dict):
        raise UserError(
            f"{where}: a merge config is a mapping of keys (merge_method, models, ...), not a list or value"
        )
    try:
        config = MergeConfig.model_validate(data)
    except ValidationError as e:
        raise UserError(_validation_message(e, where, root, data)) from e
    config._source_text = text
    config._source_path = Path(source) if isinstance(source, Path) else None
    return config


def _validation_message(error: ValidationError, where: str, root: yaml.Node | None, data: dict[str, Any]) -> str:
    first = error.errors()[0]
    loc = [p for p in first["loc"] if isinstance(p, int | str)]
    line = node_line(root, loc)
    at = f"{where} line {line}" if line else where
    kind = first["type"]
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        hint = f" (known keys: {', '.join(known)})" if known else ""
        return f"{at}: unknown key '{loc[-1]}' in {_loc_text(loc[:-1]) or 'the config'}{hint}: remove or fix it"
    if kind == "missing":
        if loc == ["merge_method"]:
            return f"{where}: no merge_method: add e.g. 'merge_method: dare_ties'"
        return f"{at}: '{_loc_text(loc)}' is missing: add it"
    field = _loc_text(loc)
    message = _clean_message(str(first["msg"]))
    return f"{at}: {field}: {message}" if field else f"{at}: {message}"


def load_merge_config(path: str | Path) -> MergeConfig:
    """Read a mergekit YAML file. Relative model paths resolve against the working directory, else the file's."""
    path = Path(path)
    return parse_merge_config(read_config_text(path, "merge config"), source=path)
