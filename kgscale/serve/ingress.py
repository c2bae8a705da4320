"""The HTTP ingress: OpenAI-compatible routes and KG completion.

One FastAPI app in a Serve deployment. It authenticates, parses and
validates (:mod:`kgscale.serve.prepare`), then hands token ids to the model
replicas through a deployment handle, and shapes their answers into the
OpenAI formats (server-sent events when ``stream`` is true). Every refusal is
a 4xx JSON error; a full queue is a 503 with ``Retry-After``.

Routes: POST /v1/embeddings, /v1/completions, /v1/chat/completions,
/v1/kg/complete; GET /v1/models, /health.
"""
# No `from __future__ import annotations` here: FastAPI reads the route
# signatures' annotations (Request) at import time.

import asyncio
import base64
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from kgscale.serve import auth, http_guard
from kgscale.serve.config import ServeConfig
from kgscale.serve.errors import ApiError, error_body
from kgscale.serve.protocol import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, KGCompleteRequest

log = logging.getLogger("kgscale.serve")
app = FastAPI(title="kgscale", docs_url=None, redoc_url=None, openapi_url=None)


def _error(status: int, message: str, **kw) -> JSONResponse:
    headers = {"Retry-After": "1"} if status == 503 else None
    return JSONResponse(error_body(status, message, **kw), status_code=status, headers=headers)


@app.middleware("http")
async def _guard(request: Request, call_next):
    """Host, CORS, authentication and the body-size limit, before any route runs."""
    state = request.app.state
    cors = None
    try:
        hosts = getattr(state, "allowed_hosts", None)
        if hosts is not None:  # None: a token guards this server and no names were configured
            http_guard.check_host(request.headers.get("host"), hosts)
        cors = http_guard.allowed_origin(request.headers.get("origin"), getattr(state, "cors_origins", frozenset()))
        if cors and request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            # a preflight carries no credentials: it is answered before authentication
            return Response(status_code=204, headers=http_guard.preflight_headers(cors))
        if not any(request.url.path.endswith(p) for p in auth.OPEN_PATHS):
            auth.check(request.headers.get("authorization"), getattr(state, "token_digest", None))
        size = request.headers.get("content-length")
        limit = getattr(state, "max_body_bytes", None)
        if limit and size and size.isdigit() and int(size) > limit:
            raise ApiError(413, f"the body has {size} bytes; the limit is {limit}")
        if request.method == "POST":
            http_guard.check_json_type(request.headers.get("content-type"))
    except ApiError as exc:
        response = _error(exc.status, exc.message, param=exc.param, code=exc.code)
    else:
        response = await call_next(request)
    if cors:  # the allowed page may read the answer, a refusal included
        response.headers.update(http_guard.cors_headers(cors))
    return response


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError):
    return _error(exc.status, exc.message, param=exc.param, code=exc.code)


@app.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException):
    if exc.status_code == 404:
        return _error(404, f"no route {request.method} {request.url.path}")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {request.url.path}")
    return _error(exc.status_code, str(exc.detail))


@app.exception_handler(Exception)
async def _internal(request: Request, exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return _error(500, f"internal error ({type(exc).__name__}); the server log has the details")


def _unwrap(exc: BaseException) -> BaseException:
    """The exception a replica raised (Ray wraps it on the way back)."""
    seen = 0
    while getattr(exc, "cause", None) is not None and seen < 5:
        exc, seen = exc.cause, seen + 1
    return exc


def _from_replica(exc: BaseException) -> "ApiError | None":
    """A replica's failure as what the client should hear, or None (a bug: 500)."""
    from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

    inner = _unwrap(exc)
    if isinstance(inner, ApiError):
        return inner
    if isinstance(exc, BackPressureError) or isinstance(inner, BackPressureError):
        return ApiError(503, "the server is at capacity (its request queue is full); retry shortly",
                        code="queue_full")
    if isinstance(exc, DeploymentUnavailableError) or isinstance(inner, DeploymentUnavailableError):
        return ApiError(503, "the model is not available right now; retry shortly", code="unavailable")
    return None


def _now() -> int:
    return int(time.time())


def _sse(obj) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


@serve.deployment
@serve.ingress(app)
class Api:
    def __init__(self, cfg: dict, model, token_digest: str | None) -> None:
        from kgscale.serve.catalog import KGCatalog
        from kgscale.models.inference import load_inference_tokenizer
        from kgscale.serve.loading import describe
        from kgscale.serve.prepare import RequestPreparer

        self.cfg = ServeConfig.model_validate(cfg)
        self.model = model
        app.state.token_digest = token_digest
        app.state.max_body_bytes = self.cfg.http.max_body_bytes
        app.state.cors_origins = frozenset(self.cfg.http.cors_origins)
        # the Host check stops pages that rebind a name to this server from
        # using it; with a token they cannot use it anyway, and a cluster's
        # probes name the pod's address, so it applies without a token or when
        # names are configured
        guard = token_digest is None or bool(self.cfg.http.allowed_hosts)
        app.state.allowed_hosts = http_guard.allowed_hosts(self.cfg.http.host, self.cfg.http.allowed_hosts) if guard else None
        # parsing and tokenising run here, off the event loop (an 8 MB body
        # held it, /health included, for 3 s), one at a time: a fast
        # tokenizer whose truncation is being set must not be shared
        self.prep_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        catalog = None
        if self.cfg.kg is not None:
            from kgscale.kg.snapshot import Snapshot

            catalog = KGCatalog(Snapshot(self.cfg.kg.snapshot), tuple(self.cfg.kg.filter_splits))
        self.catalog = catalog
        self.prep = RequestPreparer(self.cfg, load_inference_tokenizer(self.cfg.model), describe(self.cfg.model), catalog)
        self.index_size = len(catalog.candidates) if catalog is not None else 0
        self.created = _now()

    async def _body(self, request: Request, model):
        from kgscale.serve.prepare import parse

        body = await http_guard.read_body(request, self.cfg.http.max_body_bytes)  # chunked bodies too
        return await self._off_loop(parse, model, body)

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.prep_pool, fn, *args)

    async def _call(self, method: str, *args):
        try:
            return await getattr(self.model, method).remote(*args)
        except Exception as exc:
            mapped = _from_replica(exc)
            if mapped is None:
                raise
            raise mapped from None

    def _chunks(self, items: list) -> list[list]:
        n = self.cfg.batching.max_batch_size
        return [items[i:i + n] for i in range(0, len(items), n)]

    # ---- routes -----------------------------------------------------------

    @app.get("/health")
    async def health(self):
        try:
            info = await asyncio.wait_for(self._call("info"), timeout=10)
        except (ApiError, asyncio.TimeoutError) as exc:
            return _error(503, f"the model is not ready: {getattr(exc, 'message', 'no answer in 10 s')}")
        return {"status": "ok", "model": self.cfg.model_name, **info}

    @app.get("/v1/models")
    async def models(self):
        return {"object": "list", "data": [{"id": self.cfg.model_name, "object": "model", "created": self.created,
                                            "owned_by": "kgscale"}]}

    @app.post("/v1/embeddings")
    async def embeddings(self, request: Request):
        req = await self._body(request, EmbeddingRequest)
        prep = await self._off_loop(self.prep.embeddings, req)
        parts = await asyncio.gather(*(self._call("embed", c) for c in self._chunks(prep.inputs)))
        emb = np.concatenate(parts).astype(np.float32, copy=False)
        if req.encoding_format == "base64":
            data = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in emb]
        else:
            data = emb.tolist()
        tokens = sum(len(x) for x in prep.inputs)
        # JSONResponse directly: FastAPI's encoder would walk every float of every vector
        return JSONResponse({"object": "list", "model": self.cfg.model_name,
                             "data": [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(data)],
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def _generate(self, prep) -> list:
        parts = await asyncio.gather(*(self._call("generate", c, prep.params) for c in self._chunks(prep.inputs)))
        return [o for part in parts for o in part]

    @staticmethod
    def _usage(prompt: int, completion: int) -> dict:
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    @app.post("/v1/completions")
    async def completions(self, request: Request):
        req = await self._body(request, CompletionRequest)
        prep = await self._off_loop(self.prep.completion, req)
        rid = f"cmpl-{uuid.uuid4().hex}"
        if req.stream:
            return await self._stream(prep, rid, "text_completion", req)
        outs = await self._generate(prep)
        return {"id": rid, "object": "text_completion", "created": _now(), "model": self.cfg.model_name,
                "choices": [{"index": i, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason}
                            for i, o in enumerate(outs)],
                "usage": self._usage(sum(o.prompt_tokens for o in outs), sum(o.completion_tokens for o in outs))}

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request):
        req = await self._body(request, ChatCompletionRequest)
        prep = await self._off_loop(self.prep.chat, req)
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        if req.stream:
            return await self._stream(prep, rid, "chat.completion.chunk", req)
        (out,) = await self._generate(prep)
        return {"id": rid, "object": "chat.completion", "created": _now(), "model": self.cfg.model_name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": out.text},
                             "logprobs": None, "finish_reason": out.finish_reason}],
                "usage": self._usage(out.prompt_tokens, out.completion_tokens)}

    async def _stream(self, prep, rid: str, kind: str, req):
        """Server-sent events; the first item is awaited before answering so
        that a full queue is still a 503, not a broken stream."""
        gen = self.model.options(stream=True).stream.remote(prep.inputs[0], prep.params)
        try:
            await gen.__anext__()  # {"started": True}
        except Exception as exc:
            mapped = _from_replica(exc)
            if mapped is None:
                raise
            raise mapped from None
        chat = kind == "chat.completion.chunk"
        include_usage = bool(req.stream_options and req.stream_options.include_usage)
        created, name = _now(), self.cfg.model_name

        def chunk(text: str | None, finish: str | None, role: bool = False) -> dict:
            if chat:
                delta = ({"role": "assistant", "content": ""} if role else {}) | ({"content": text} if text else {})
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            return {"id": rid, "object": kind, "created": created, "model": name, "choices": [choice]}

        async def events():
            try:
                if chat:
                    yield _sse(chunk(None, None, role=True))
                async for item in gen:
                    if "text" in item:
                        yield _sse(chunk(item["text"], None))
                    elif "done" in item:
                        out = item["done"]
                        yield _sse(chunk(None, out.finish_reason))
                        if include_usage:
                            yield _sse({"id": rid, "object": kind, "created": created, "model": name, "choices": [],
                                        "usage": self._usage(out.prompt_tokens, out.completion_tokens)})
            except Exception as exc:  # the stream has begun: report in-band, as OpenAI does
                mapped = _from_replica(exc)
                log.warning("stream %s failed: %r", rid, exc)
                yield _sse(error_body(mapped.status if mapped else 500,
                                      mapped.message if mapped else "generation failed on the server"))
            finally:
                gen.cancel()  # a client that left stops the replica's generation too
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/kg/complete")
    async def kg_complete(self, request: Request):
        req = await self._body(request, KGCompleteRequest)
        head, rel, text, ids, known, exclude, k = await self._off_loop(self.prep.kg, req, self.index_size)
        ent_ids, scores = await self._call("search", ids, k, exclude.tolist())
        known_set = set(known.tolist())
        c = self.catalog
        return {"object": "kg.completion", "model": self.cfg.model_name,
                "query": {"head": c.describe(head),
                          "relation": {"id": rel, "key": c.relation_keys[rel], "text": c.relation_texts[rel]},
                          "inverse": req.inverse, "text": text},
                "filter_known": req.filter_known, "filtered": int(len(exclude)),
                "results": [{"rank": r + 1, **c.describe(int(e)), "score": float(s), "known": int(e) in known_set}
                            for r, (e, s) in enumerate(zip(ent_ids.tolist(), scores.tolist()))]}
