"""The OpenAI wire format: error bodies, validation messages and the request bodies accepted."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aloekit.serve.limits import MAX_LOGPROBS, MAX_N


class APIError(Exception):
    """An error answered to the client as an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = " ".join(message.split())
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(
            self.status, self.message, type=self.type, param=self.param, code=self.code, headers=self.headers
        )


def error_response(
    status: int,
    message: str,
    *,
    type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    """Turn FastAPI's list of validation errors into one line naming the first bad field."""
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    if first.get("type") == "json_invalid":
        return "request body is not valid JSON", None
    # Pydantic adds union members to the path ('prompt.str', 'content.list[TextPart]'); keep field names and
    # list indices only, so the client sees 'messages.0.content'.
    loc = [str(p) for p in first.get("loc", ()) if p != "body" and _is_field(p)]
    param = ".".join(loc)
    msg = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    if first.get("type") == "missing":
        if not param:  # no body at all: FastAPI reports the body itself as the missing field
            return "request body is missing: send a JSON object", None
        return f"missing required field '{param}'", param
    if not param:
        return f"request body: {msg}", None
    return f"invalid field '{param}': {msg}", param


def _is_field(part: object) -> bool:
    if isinstance(part, int):
        return True
    return isinstance(part, str) and part.isidentifier() and part not in ("str", "int", "float", "bool", "list")


# --- request bodies -----------------------------------------------------------------------------------------

# strict: "5" is not an int and true is not a number; clients that send the wrong type get a 400 instead of a
# silently coerced request. Unknown fields (user, presence_penalty, ...) are ignored, as most servers do.
_STRICT = ConfigDict(strict=True, extra="ignore")


class TextPart(BaseModel):
    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = _STRICT
    role: Literal["system", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class Sampling(BaseModel):
    model_config = _STRICT
    model: str | None = None
    max_tokens: Annotated[int, Field(ge=0)] | None = None
    # OpenAI's default temperature is 1; clients that want greedy decoding send 0 (our openai backend always
    # sends it explicitly).
    temperature: Annotated[float, Field(ge=0, le=2)] = 1.0
    top_p: Annotated[float, Field(gt=0, le=1)] = 1.0
    n: Annotated[int, Field(ge=1, le=MAX_N)] = 1
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False

    def stops(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(Sampling):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    max_completion_tokens: Annotated[int, Field(ge=0)] | None = None
    logprobs: bool = False


class CompletionRequest(Sampling):
    prompt: str | Annotated[list[str], Field(min_length=1)]
    logprobs: Annotated[int, Field(ge=0, le=MAX_LOGPROBS)] | None = None
    echo: bool = False

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> Any:
        # Token-id prompts (lm-eval's default for local-completions) need the server's tokenizer on the client.
        if isinstance(value, list) and value and not isinstance(value[0], str):
            raise ValueError("token-id prompts are not supported; send text (lm-eval: tokenized_requests=False)")
        return value

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


# --- micro-batcher ------------------------------------------------------------------------------------------
