"""Settings of ``kgscale serve``: what model, where to listen, how to scale.

One YAML file (or ``key=value`` overrides) fills :class:`ServeConfig`; its
sections are the model (:class:`kgscale.models.backbone.BackboneConfig`),
``http`` (bind address), ``deployment`` (replicas, autoscaling, resources,
the bounded queue), ``batching`` (dynamic batching), ``limits`` (what a
request may ask for) and ``kg`` (the entity index for KG completion).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from kgscale.config import StrictModel
from kgscale.models.backbone import BackboneConfig
from kgscale.serve.http_guard import http_origin


class HttpConfig(StrictModel):
    # loopback unless told otherwise: a model server is not public by accident
    host: str = "127.0.0.1"
    # 0: pick a free port (printed at start-up)
    port: int = Field(8000, ge=0, le=65535)
    # the application's path prefix ("/" serves /v1/... at the root)
    route_prefix: str = "/"
    # requests whose body is larger are answered 413 before parsing
    max_body_bytes: int = Field(8 << 20, ge=1024)
    # end-to-end timeout of one HTTP request in the proxy (None: no limit)
    request_timeout_s: float | None = 300.0
    # Host names answered besides the loopback names and `host` itself; a
    # request naming another is refused (DNS rebinding). "*": any name
    allowed_hosts: list[str] = Field(default_factory=list)
    # web origins ("https://app.example.com") whose pages may call this server
    # from a browser (CORS); none by default, so no page can read its answers
    cors_origins: list[str] = Field(default_factory=list)
    # bind a non-loopback address without a token (api_token_env unset):
    # refused unless this is set (`kgscale serve --allow-public`)
    allow_public: bool = False

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: list[str]) -> list[str]:
        return [http_origin(v) for v in value]


class AutoscalingConfig(StrictModel):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    # Serve adds replicas when the average of ongoing requests per replica exceeds this
    target_ongoing_requests: float = Field(16.0, gt=0)
    upscale_delay_s: float = Field(5.0, ge=0)
    downscale_delay_s: float = Field(60.0, ge=0)

    @model_validator(mode="after")
    def _order(self):
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        return self


class DeploymentConfig(StrictModel):
    # fixed replica count; ignored when `autoscaling` is set
    replicas: int = Field(1, ge=1)
    autoscaling: AutoscalingConfig | None = None
    # resources of one model replica; a GPU share such as 0.5 packs two replicas a GPU
    num_cpus: float = Field(1.0, ge=0)
    num_gpus: float = Field(0.0, ge=0)
    # torch threads a CPU replica uses; None: its num_cpus (at least 1)
    torch_threads: int | None = Field(None, ge=1)
    # requests a replica works on at once; must be at least the batch size or
    # batches never fill
    max_ongoing_requests: int = Field(64, ge=1)
    # requests waiting for a replica, per caller; beyond it the answer is 503
    max_queued_requests: int = Field(256, ge=1)
    # the same two for the HTTP ingress (cheap: it parses, validates, forwards)
    ingress_replicas: int = Field(1, ge=1)
    ingress_max_ongoing_requests: int = Field(256, ge=1)
    ingress_max_queued_requests: int = Field(512, ge=1)
    # auto: cuda when the replica has a GPU
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 on GPU, fp32 on CPU
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"


class BatchingConfig(StrictModel):
    # texts (embeddings) or prompts (generation) run in one forward pass;
    # 1 turns dynamic batching off (one request at a time)
    max_batch_size: int = Field(32, ge=1)
    # how long the first request of an embeddings batch waits for others
    batch_wait_timeout_s: float = Field(0.01, ge=0)
    # the same for generation. A generation batch runs for seconds, and the
    # clients it answered need a round trip before their next requests can
    # join; a short wait splits them off into small batches that follow each
    # other (measured with SmolLM2 on 2 CPU cores, 32 clients: batches of
    # 9, 4, 11, 7, 1 and 4.5 requests/s at 0.05 s; all 32 and 10.8/s at 0.2 s).
    # A full batch never waits.
    generation_wait_timeout_s: float = Field(0.2, ge=0)


class LimitsConfig(StrictModel):
    # inputs in one embeddings request, prompts in one completions request
    max_inputs: int = Field(256, ge=1)
    # (lengths count tokens; key names avoid the word that marks secrets)
    # tokens of one embedding input; None: the model's context length
    max_input_length: int | None = Field(None, ge=2)
    # completion tokens one request may ask for (`max_tokens`), and the default
    # when it asks for none
    max_completion_length: int = Field(1024, ge=1)
    default_completion_length: int = Field(128, ge=1)
    # largest k of KG completion
    max_k: int = Field(100, ge=1)
    # characters of one stop sequence (at most 4 of them); each is checked
    # against the decoded tail of every sequence at every step
    max_stop_length: int = Field(100, ge=1)


class PoolingConfig(StrictModel):
    # auto: last token + EOS for causal LMs (KaLM), mean for encoders (MiniLM)
    how: Literal["auto", "last", "mean", "cls"] = "auto"


class KGConfig(StrictModel):
    # the snapshot whose entities KG completion ranks
    snapshot: Path
    # where the entity embeddings live: loaded when present and made by the same
    # model, pooling and max_length, else computed at start-up and written there
    # (None: computed at every start-up, kept in memory only)
    index_dir: Path | None = None
    # views are at most this many tokens, as in training and evaluation
    max_length: int = Field(64, ge=2)
    # entity texts are cut at this many tokens before a view is composed (KaLM: 50),
    # and further in a query so that its relation fits
    max_entity_tokens: int | None = Field(50, ge=1)
    # known triples of these splits are what `filter_known` removes
    filter_splits: tuple[Literal["train", "valid", "test"], ...] = ("train", "valid", "test")
    # texts per forward pass while building the index
    build_batch_size: int = Field(64, ge=1)


class ServeConfig(StrictModel):
    model: BackboneConfig
    # the id clients use in "model" (and /v1/models lists); None: the model's name
    served_model_name: str | None = None
    # the Serve application's name (several can share one Ray cluster)
    app_name: str = "kgscale"
    http: HttpConfig = HttpConfig()
    deployment: DeploymentConfig = DeploymentConfig()
    batching: BatchingConfig = BatchingConfig()
    limits: LimitsConfig = LimitsConfig()
    pooling: PoolingConfig = PoolingConfig()
    kg: KGConfig | None = None
    # environment variable holding the bearer token; when it is set, every
    # request but /health must carry `Authorization: Bearer <token>`
    api_token_env: str = "KGSCALE_API_TOKEN"

    @model_validator(mode="before")
    @classmethod
    def _model_shorthand(cls, data):
        # `model: tiny-llama` stands for `model: {model: tiny-llama}`
        if isinstance(data, dict) and isinstance(data.get("model"), str):
            data = {**data, "model": {"model": data["model"]}}
        return data

    @model_validator(mode="after")
    def _consistent(self):
        if self.deployment.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(
                f"deployment.max_ongoing_requests ({self.deployment.max_ongoing_requests}) is below "
                f"batching.max_batch_size ({self.batching.max_batch_size}): batches could never fill")
        if self.limits.default_completion_length > self.limits.max_completion_length:
            raise ValueError("limits.default_completion_length exceeds limits.max_completion_length")
        if not self.http.route_prefix.startswith("/"):
            raise ValueError(f"http.route_prefix must start with '/', got {self.http.route_prefix!r}")
        return self

    @property
    def model_name(self) -> str:
        if self.served_model_name:
            return self.served_model_name
        name = self.model.model.rstrip("/")
        return Path(name).name if ("/" in name and Path(name).expanduser().exists()) else name
