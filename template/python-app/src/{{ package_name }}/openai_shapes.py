"""OpenAI's request shapes, as ``/v1`` takes them (pydantic): chat completions (messages with
tool calls and tool results, ``tools``, ``tool_choice``, ``response_format`` with a JSON
schema, sampling options) and embeddings. ``response_format`` is /chat's too.

A request is checked here and then sent on as it came (``forwarded()``): what the caller set
goes upstream, nothing is added but the caller's max_tokens cap. Unknown fields are refused
(400) rather than passed on unseen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    model_validator,
)

from .callers import MAX_TOKENS_LIMIT

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"  # a function's or a JSON schema's name, as OpenAI's


def _number(value: Any) -> Any:
    """A JSON number (not a string, not true/false), as OpenAI takes it."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


Number = BeforeValidator(_number)
Temperature = Annotated[float, Number, Field(ge=0, le=2)]
Fraction = Annotated[float, Number, Field(ge=0, le=1)]
Penalty = Annotated[float, Number, Field(ge=-2, le=2)]
Score = Annotated[float, Number, Field(ge=0, le=100)]  # /feedback's


MaxTokens = Annotated[StrictInt, Field(ge=1, le=MAX_TOKENS_LIMIT)]


class Shape(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JsonSchemaFormat(Shape):
    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
    description: StrictStr | None = None
    json_schema: dict[str, Any] | None = Field(None, alias="schema")
    strict: StrictBool | None = None


class ResponseFormat(Shape):
    """``{"type": "text"}``, ``{"type": "json_object"}`` or ``{"type": "json_schema",
    "json_schema": {"name", "schema", "strict"}}``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if (self.type == "json_schema") != (self.json_schema is not None):
            raise ValueError('"json_schema" goes with type "json_schema", and only there')
        return self


class Function(Shape):
    name: Annotated[StrictStr, Field(pattern=NAME_PATTERN)]
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class Tool(Shape):
    type: Literal["function"]
    function: Function


class NamedFunction(Shape):
    name: StrictStr


class NamedToolChoice(Shape):
    type: Literal["function"]
    function: NamedFunction


class CalledFunction(Shape):
    name: StrictStr
    arguments: StrictStr  # JSON text, as the model wrote it


class ToolCall(Shape):
    id: StrictStr
    type: Literal["function"]
    function: CalledFunction


class Message(BaseModel):
    """One message: system/developer/user text (or parts), an assistant's answer or tool
    calls, a tool's result (``tool_call_id``). Other fields OpenAI defines pass through."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: StrictStr | list[dict[str, Any]] | None = None
    name: StrictStr | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: StrictStr | None = None

    @model_validator(mode="after")
    def _complete(self) -> Message:
        if self.role == "tool" and (self.tool_call_id is None or self.content is None):
            raise ValueError('a "tool" message needs "tool_call_id" and "content"')
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError('an "assistant" message needs "content" or "tool_calls"')
        if self.role not in ("assistant", "tool") and self.content is None:
            raise ValueError(f'a "{self.role}" message needs "content"')
        return self


class StreamOptions(Shape):
    include_usage: StrictBool | None = None


class CompletionRequest(Shape):
    """POST /v1/chat/completions."""

    model: Annotated[StrictStr, Field(min_length=1)]
    messages: Annotated[list[Message], Field(min_length=1)]
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: StrictBool | None = None
    response_format: ResponseFormat | None = None
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: Fraction | None = None
    stop: StrictStr | Annotated[list[StrictStr], Field(min_length=1, max_length=4)] | None = None
    seed: StrictInt | None = None
    presence_penalty: Penalty | None = None
    frequency_penalty: Penalty | None = None
    logprobs: StrictBool | None = None
    top_logprobs: Annotated[StrictInt, Field(ge=0, le=20)] | None = None
    user: StrictStr | None = None

    def forwarded(self, max_tokens: int | None) -> dict[str, Any]:
        """The body to send: the request as it came, the caller's max_tokens applied."""
        body = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        if max_tokens is not None:
            body["max_completion_tokens" if self.max_completion_tokens else "max_tokens"] = (
                max_tokens
            )
        return body


class EmbeddingRequest(Shape):
    """POST /v1/embeddings."""

    model: Annotated[StrictStr, Field(min_length=1)]
    input: (
        Annotated[StrictStr, Field(min_length=1)]
        | Annotated[list[StrictStr], Field(min_length=1, max_length=2048)]
        | Annotated[list[StrictInt], Field(min_length=1)]
        | Annotated[list[list[StrictInt]], Field(min_length=1, max_length=2048)]
    )
    encoding_format: Literal["float", "base64"] | None = None
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None

    def forwarded(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_unset=True)


def shape_problem(errors: Sequence[Any]) -> tuple[str, str | None]:
    """(message, param) for the first problem pydantic found, ``param`` as OpenAI names it
    (``messages.1.tool_call_id``)."""
    error = errors[0]
    loc = [str(part) for part in error.get("loc", ()) if not _is_union_branch(part)]
    param = ".".join(loc) or None
    kind = error.get("type", "")
    if kind == "extra_forbidden":
        return f"unknown field {param!r}", param
    if kind == "missing":
        return f"{param!r} is required", param
    if param is None:
        return "the request body must be a JSON object", None
    message = str(error["ctx"]["error"]) if kind == "value_error" else error.get("msg", "")
    return f"{param}: {message}", param


def _is_union_branch(part: Any) -> bool:
    """pydantic names the branch of a union it tried (``str``, ``list[int]``): not a field."""
    return isinstance(part, str) and (
        part in ("str", "int", "float", "function-after[_number(), float]")
        or part.startswith(("list[", "dict[", "literal[", "function-", "constrained-"))
        or part[:1].isupper()
    )
