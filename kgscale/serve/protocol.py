"""Request bodies, as the OpenAI API defines them (and KG completion's own).

Strict: a wrong type is an error, not a coercion ("5" is no integer), and an
unknown field is an error, as on OpenAI's own server (a misspelt
``max_token`` is then reported instead of silently ignored). Parameters that
the API defines but this server does not implement (``n`` > 1, log
probabilities, tools) are accepted only at their neutral value and refused
with a message otherwise. Limits that depend on the deployment (batch size,
context length, k) are checked by the ingress, which knows them.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


TokenIds = list[Annotated[int, Field(ge=0)]]


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str] | TokenIds | list[TokenIds]
    # the openai client asks for base64 unless told otherwise
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(None, ge=1)
    user: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class _Sampling(_Body):
    model: str
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    # the range torch.manual_seed takes
    seed: int | None = Field(None, ge=-(2 ** 63), le=2 ** 64 - 1)
    user: str | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v):
        stops = [v] if isinstance(v, str) else list(v or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(s == "" for s in stops):
            raise ValueError("a stop sequence may not be empty")
        return v

    @model_validator(mode="after")
    def _supported(self):
        if self.n != 1:
            raise ValueError("n must be 1: this server returns one choice per prompt")
        if self.presence_penalty or self.frequency_penalty:
            raise ValueError("presence_penalty and frequency_penalty are not supported; leave them at 0")
        if self.logit_bias:
            raise ValueError("logit_bias is not supported")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options is only allowed when stream is true")
        return self

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(_Sampling):
    prompt: str | list[str] | TokenIds | list[TokenIds]
    max_tokens: int | None = Field(None, ge=1)
    echo: bool = False
    logprobs: int | None = None
    best_of: int | None = None
    suffix: str | None = None

    @model_validator(mode="after")
    def _plain(self):
        if self.echo or self.logprobs is not None or self.suffix is not None or self.best_of not in (None, 1):
            raise ValueError("echo, logprobs, suffix and best_of are not supported")
        return self


class TextPart(_Body):
    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    # "developer" is OpenAI's newer name for "system"
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class ResponseFormat(_Body):
    type: Literal["text"]


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = None
    response_format: ResponseFormat | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _plain(self):
        if self.logprobs or self.top_logprobs is not None:
            raise ValueError("logprobs are not supported")
        if self.tools or self.tool_choice not in (None, "none"):
            raise ValueError("tools are not supported")
        if self.max_tokens is not None and self.max_completion_tokens is not None:
            raise ValueError("give max_tokens or max_completion_tokens, not both")
        return self

    def completion_limit(self) -> int | None:
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens


class KGCompleteRequest(_Body):
    # optional here (curl users rarely care); when given it must be the served model
    model: str | None = None
    # an entity key (as in the snapshot) or an entity name
    head: str = Field(min_length=1)
    # a relation key or its text
    relation: str = Field(min_length=1)
    # None: 10, or every entity when there are fewer
    k: int | None = Field(None, ge=1)
    # drop entities that the snapshot already knows as answers (train/valid/test)
    filter_known: bool = False
    # predict heads for (tail=head, relation): the inverse query, as evaluation does
    inverse: bool = False
