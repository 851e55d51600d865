"""An Ollama ``Modelfile`` for an exported GGUF, so ``ollama create NAME -f Modelfile`` works unchanged.

Ollama renders prompts with Go templates, not Jinja, so the model's chat template is translated. Rather than
parse Jinja, we render the model's own template on probe conversations and recognise the turn format it
produces; a known format (ChatML, as SmolLM2 and Qwen use; Gemma's turns) gets a Go template written for it
in the shape of Ollama's own templates for these formats. Anything else gets no TEMPLATE line: Ollama then
falls back to the chat template stored in the GGUF, which it matches against the templates it knows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_SYS, _USER, _ASSISTANT, _USER2 = "SYS-PROBE", "USER-PROBE", "ASSISTANT-PROBE", "USER2-PROBE"

CHATML_TEMPLATE = """{{- if .System }}<|im_start|>system
{{ .System }}<|im_end|>
{{ end }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<|im_start|>user
{{ .Content }}<|im_end|>
{{ else if eq .Role "assistant" }}<|im_start|>assistant
{{ .Content }}{{ if not $last }}<|im_end|>
{{ end }}
{{- end }}
{{- if and $last (ne .Role "assistant") }}<|im_start|>assistant
{{ end }}
{{- end }}"""

# Gemma has no system turn: its template puts the system text at the top of the first user turn.
GEMMA_TEMPLATE = """{{- $system := .System }}
{{- range $i, $_ := .Messages }}
{{- $last := eq (len (slice $.Messages $i)) 1 }}
{{- if eq .Role "user" }}<start_of_turn>user
{{ if $system }}{{ $system }}

{{ $system = "" }}{{ end }}{{ .Content }}<end_of_turn>
{{ if $last }}<start_of_turn>model
{{ end }}
{{- else if eq .Role "assistant" }}<start_of_turn>model
{{ .Content }}{{ if not $last }}<end_of_turn>
{{ end }}
{{- end }}
{{- end }}"""


@dataclass(frozen=True)
class ChatFormat:
    name: str
    template: str
    stops: tuple[str, ...]
    default_system: str | None


def modelfile_text(gguf_name: str, chat_template: str | None, tokenizer: Any) -> tuple[str, bool]:
    """The Modelfile's text for the GGUF file ``gguf_name`` (in the same folder), and whether TEMPLATE was
    written (False: the chat template is not a format we know, or there is none)."""
    lines = [f"FROM ./{gguf_name}"]
    found = chat_format(tokenizer) if chat_template else None
    if found is None:
        lines.append(
            "# No TEMPLATE: the model's chat template is not ChatML or Gemma turns; Ollama reads the one stored "
            "in the GGUF."
        )
        eos = getattr(tokenizer, "eos_token", None)
        if eos:
            lines.append(f"PARAMETER stop {_quoted(eos)}")
        return "\n".join(lines) + "\n", False
    lines.append(f'TEMPLATE """{found.template}"""')
    if found.default_system:
        lines.append(f'SYSTEM """{found.default_system}"""')
    lines += [f"PARAMETER stop {_quoted(s)}" for s in found.stops]
    return "\n".join(lines) + "\n", True


def chat_format(tokenizer: Any) -> ChatFormat | None:
    """The turn format the tokenizer's chat template renders, recognised on probe conversations."""

    def render(messages: list[dict[str, str]]) -> str | None:
        try:
            return str(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        except Exception:  # a template may reject a probe (e.g. no system role); then it is not a format we know
            return None

    bos = getattr(tokenizer, "bos_token", None) or ""
    with_system = render([{"role": "system", "content": _SYS}, {"role": "user", "content": _USER}])
    bare = render([{"role": "user", "content": _USER}])
    multi = render(
        [
            {"role": "user", "content": _USER},
            {"role": "assistant", "content": _ASSISTANT},
            {"role": "user", "content": _USER2},
        ]
    )
    if with_system is None or bare is None or multi is None:
        return None
    # A template may write BOS itself (Gemma); llama.cpp and Ollama add it from the file's add_bos flag instead.
    # Try with and without it: SmolLM2's bos_token is <|im_start|>, which is part of the turn format.
    for probes in ((with_system, bare, multi), tuple(t.removeprefix(bos) for t in (with_system, bare, multi))):
        found = _recognise(*probes)
        if found is not None:
            return found
    return None


def _recognise(with_system: str, bare: str, multi: str) -> ChatFormat | None:
    def chatml(system: str | None, *turns: tuple[str, str]) -> str:
        head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
        return head + "".join(f"<|im_start|>{r}\n{c}<|im_end|>\n" for r, c in turns) + "<|im_start|>assistant\n"

    default = _chatml_default_system(bare)
    turns = (("user", _USER), ("assistant", _ASSISTANT), ("user", _USER2))
    if (
        with_system == chatml(_SYS, ("user", _USER))
        and bare == chatml(default, ("user", _USER))
        and multi == chatml(default, *turns)
    ):
        return ChatFormat("chatml", CHATML_TEMPLATE, ("<|im_start|>", "<|im_end|>"), default)

    def gemma(*turns: tuple[str, str]) -> str:
        names = {"user": "user", "assistant": "model"}
        return "".join(f"<start_of_turn>{names[r]}\n{c}<end_of_turn>\n" for r, c in turns) + "<start_of_turn>model\n"

    if (
        with_system == gemma(("user", f"{_SYS}\n\n{_USER}"))
        and bare == gemma(("user", _USER))
        and multi == gemma(*turns)
    ):
        return ChatFormat("gemma", GEMMA_TEMPLATE, ("<end_of_turn>",), None)
    return None


def _chatml_default_system(rendered: str) -> str | None:
    """The system prompt a ChatML template inserts when the conversation has none (SmolLM2 does)."""
    head = "<|im_start|>system\n"
    if not rendered.startswith(head):
        return None
    end = rendered.find("<|im_end|>")
    return rendered[len(head) : end] if end >= 0 else None


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
