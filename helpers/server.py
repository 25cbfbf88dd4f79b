"""The live inference server: the original Unity client's routes, a JSON API and a page to try photos.

    python -m helpers.server [--model PATH] [--host 127.0.0.1] [--port 4200] [--precision int8|fp32] [--cors-origin URL]

Serves an exported `.onnx` through helpers.inference.Predictor (nothing is unpickled). All image work runs on
one worker thread behind a bounded queue: a newer frame pushes the oldest waiting one out (HTTP 503), so a client
that sends faster than the model answers gets its newest frames answered at a flat latency instead of a backlog.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import os
import sys
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from PIL import Image, ImageOps
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from helpers.inference import (
    Predictor,
    PredictorError,
    centroids,
    colorize,
    isolate,
    overlay,
    resize_mask,
    to_rgb_array,
)
from helpers.labels import group_of
from helpers.paths import int8_is_stale, stage_paths, trained_stages

SAVE_NAME = "unity_resnet34"
MODELS_DIR = Path("Assets/Data~/models")
HOST, PORT = "127.0.0.1", 4200  # what the Unity client calls, hard-coded there
GRID = 64  # the client places tags on a 64 x 64 grid
MAX_PIXELS = 40_000_000  # a 48 MP phone photo is refused, a 12 MP one is fine
MAX_BODY_BYTES = 32 * 1024 * 1024
STATIC = Path(__file__).resolve().parent / "static"


class ServerError(Exception):
    """The server cannot start; the message says why and what to run."""


class BadInput(Exception):
    """A request the server cannot use: answered with `status` and a JSON message, never a 500."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class Shed(Exception):
    """A frame dropped so that newer ones are answered: answered with 503."""


# ---------------------------------------------------------------- the model


def find_model(models_dir: Path, precision: str, save_name: str = SAVE_NAME) -> Path:
    """The largest trained stage's export in `models_dir`, fp32 or its int8 copy."""
    stages = trained_stages(models_dir, save_name)
    if not stages:
        raise ServerError(f"no trained model in {models_dir} (looked for {save_name}_<res>x.onnx). Train one with "
                          "SegmentationLearner.ipynb (GoBig.ipynb for larger ones) or `make demo` (stage learner-64 "
                          "and later), or give a model with --model PATH.")
    res, fp32 = max(stages.items())
    if precision == "fp32":
        return fp32
    int8 = stage_paths(models_dir, save_name, res)["int8"]
    if not int8.is_file():
        raise ServerError(f"{int8} not found: the ONNX notebook makes it from {fp32.name} (run ONNX.ipynb, or "
                          "`make demo FROM=onnx`). Or serve the fp32 model with --precision fp32.")
    if int8_is_stale(fp32, int8):
        raise ServerError(f"{int8.name} is older than {fp32.name}, so it was quantized from an earlier training: "
                          "rerun ONNX.ipynb (or `make demo FROM=onnx`), or serve --precision fp32.")
    return int8


def precision_of(predictor: Predictor) -> str:
    """`int8` for a quantized export (helpers.export.quantize_int8 marks it in the metadata), else `fp32`."""
    return "int8" if "int8" in predictor.metadata.get("precision", "") else "fp32"


def load_predictor(model: Path | None, precision: str | None, models_dir: Path = MODELS_DIR,
                   threads: int | None = None) -> Predictor:
    """The Predictor to serve: `model` as given, or the largest trained stage at `precision` (fp32 by default)."""
    path = model if model is not None else find_model(models_dir, precision or "fp32")
    try:
        predictor = Predictor(path, threads=threads)
    except PredictorError as e:
        raise ServerError(str(e)) from None
    if precision is not None and precision_of(predictor) != precision:
        raise ServerError(f"{path} is an {precision_of(predictor)} model, not {precision}: drop --precision or give "
                          "the other file.")
    return predictor


# ---------------------------------------------------------------- image work (runs on the worker thread)


def decode_base64(text: str) -> bytes:
    """The bytes of a base64 string, or BadInput saying it is not base64."""
    if not text:
        raise BadInput(400, "image64 is empty: send a base64-encoded PNG or JPEG.")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(400, "image64 is not valid base64 (standard alphabet, no line breaks).") from None


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """PNG/JPEG bytes as upright H x W x 3 RGB; the pixel count is checked before anything is decompressed."""
    if not data:
        raise BadInput(400, "the image is empty (0 bytes): send a PNG or JPEG.")
    try:
        image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        raise BadInput(413, f"the image has more than {max_pixels:,} pixels; send a smaller one.") from None
    except Exception:  # PIL raises several types for bytes it does not recognise
        raise BadInput(400, f"the {len(data):,} bytes sent are not an image PNG or JPEG could be read from.") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadInput(413, f"the image is {width} x {height} = {width * height:,} pixels; the limit is "
                            f"{max_pixels:,}. Send a smaller image.")
    try:
        # phones store photos sideways with an EXIF turn; the model and the page need them upright
        return to_rgb_array(ImageOps.exif_transpose(image))
    except PredictorError as e:
        raise BadInput(400, str(e)) from None
    except Exception as e:  # truncated or corrupt data only fails here, when the pixels are decoded
        raise BadInput(400, f"the image could not be decoded ({e.__class__.__name__}: {e}).") from None


def encode_png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a uint8 image (L, RGB or RGBA), fast compression: the client decodes it at once."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def class_stats(mask: np.ndarray, confidence: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel count and mean confidence of every mask value."""
    flat = mask.ravel()
    counts = np.bincount(flat, minlength=n_classes)
    sums = np.bincount(flat, weights=confidence.ravel(), minlength=n_classes)
    return counts, sums / np.maximum(counts, 1)


def grid_position(pixel: int, size: int) -> int:
    """A pixel coordinate as a cell of the client's 64-cell axis (0..63)."""
    return min(GRID - 1, int((pixel + 0.5) * GRID / size))


def legacy_frame(predictor: Predictor, image64: str, palette: np.ndarray, max_pixels: int) -> dict[str, Any]:
    """The original server's reply to a frame: an RGBA overlay at model size and one tag per visible label."""
    rgb = decode_image(decode_base64(image64), max_pixels)
    batch, _ = predictor.prepare(rgb)
    masks, confidences = predictor.run(batch)
    mask = masks[0]
    # the client stretches the overlay over the screen, so model size is enough; void and hidden rows have alpha 0
    png = encode_png(colorize(mask, palette))
    _, mean_conf = class_stats(mask, confidences[0], len(palette))
    height, width = mask.shape
    tags = [{"label": c["label"] - 1, "labelPositionX": grid_position(c["labelPositionX"], width),
             "labelPositionY": grid_position(c["labelPositionY"], height)}
            for c in centroids(mask) if palette[c["label"], 3] > 0]
    return {"mime": "image/png", "image64": base64.b64encode(png).decode("ascii"), "labels": tags,
            "confidences": [round(float(mean_conf[t["label"] + 1]), 4) for t in tags]}


@dataclass(frozen=True)
class PredictOptions:
    """What a /predict caller asked for beside the class list."""

    mask: bool = False
    overlay: bool = False
    opacity: float = 0.5
    groups: tuple[str, ...] | None = None  # groups drawn on the overlay; None = all


def predict_image(predictor: Predictor, data: bytes, options: PredictOptions, max_pixels: int) -> dict[str, Any]:
    """The JSON API's reply: classes present, confidence, timing, and optionally mask and overlay PNGs."""
    t0 = time.perf_counter()
    rgb = decode_image(data, max_pixels)
    batch, size = predictor.prepare(rgb)
    t1 = time.perf_counter()
    masks, confidences = predictor.run(batch)
    t2 = time.perf_counter()
    mask, confidence = masks[0], confidences[0]
    counts, mean_conf = class_stats(mask, confidence, len(predictor.codes))
    height, width = mask.shape
    classes = []
    for c in centroids(mask):
        value = c["label"]
        name = predictor.codes[value]
        classes.append({"label": value - 1, "value": value, "name": name, "group": group_of(name),
                        "color": predictor.palette[value].tolist(), "share": round(float(counts[value] / mask.size), 6),
                        "centroid": {"x": round((c["labelPositionX"] + 0.5) / width, 4),
                                     "y": round((c["labelPositionY"] + 0.5) / height, 4)},
                        "confidence": round(float(mean_conf[value]), 4)})
    classes.sort(key=lambda c: -c["share"])
    out: dict[str, Any] = {"width": size[0], "height": size[1], "classes": classes,
                           "mean_confidence": round(float(confidence.mean()), 4)}
    if options.mask or options.overlay:
        full = resize_mask(mask, size)
        if options.mask:
            out["mask_png"] = base64.b64encode(encode_png(full)).decode("ascii")
        if options.overlay:
            groups = predictor.labels.groups
            keep = None if options.groups is None else isolate(full, [v for g in options.groups for v in groups[g]])
            out["overlay_png"] = base64.b64encode(encode_png(
                overlay(rgb, full, predictor.palette, options.opacity, keep))).decode("ascii")
    t3 = time.perf_counter()
    out["timing_ms"] = {"decode": round((t1 - t0) * 1000, 2), "model": round((t2 - t1) * 1000, 2),
                        "postprocess": round((t3 - t2) * 1000, 2)}
    return out


# ---------------------------------------------------------------- no backlog


@dataclass
class _Job:
    """A request's work, the future its handler awaits, and whether a newer frame may push it out."""

    fn: Callable[[], Any]
    future: asyncio.Future
    sheddable: bool
    queued: float = field(default_factory=time.perf_counter)


class InferenceQueue:
    """Runs jobs on worker threads with at most `waiting` queued; a newer job pushes the oldest sheddable one out."""

    # only the event loop thread touches the queue (worker threads report back through call_soon_threadsafe): no lock
    def __init__(self, waiting: int = 1, workers: int = 1):
        if waiting < 1 or workers < 1:
            raise ValueError(f"waiting and workers must be at least 1; got {waiting}, {workers}")
        self.max_waiting = waiting
        self.workers = workers
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="inference")
        self._idle = workers
        self._waiting: deque[_Job] = deque()
        self.counts = {"answered": 0, "shed": 0, "failed": 0}

    async def run(self, fn: Callable[[], Any], sheddable: bool = True) -> tuple[Any, float, float]:
        """fn's result, the seconds it waited and ran; Shed when newer work pushed it out or the queue is full."""
        job = _Job(fn, asyncio.get_running_loop().create_future(), sheddable)
        if self._idle:
            self._idle -= 1
            self._start(job)
        else:
            if len(self._waiting) >= self.max_waiting:
                victim = next((j for j in self._waiting if j.sheddable), None)
                if victim is None:
                    self.counts["shed"] += 1
                    raise Shed("the server is busy with other requests; try again in a moment.")
                self._waiting.remove(victim)
                self.counts["shed"] += 1
                victim.future.set_exception(Shed("a newer frame arrived before this one could be processed."))
            self._waiting.append(job)
        return await job.future

    def _start(self, job: _Job) -> None:
        loop = job.future.get_loop()
        started = time.perf_counter()
        cf = self.executor.submit(job.fn)
        cf.add_done_callback(lambda f: loop.call_soon_threadsafe(self._finished, job, f, started))

    def _finished(self, job: _Job, done: Future, started: float) -> None:
        if not job.future.done():  # a cancelled request (client gone) has nobody to tell
            error = done.exception()
            if error is None:
                self.counts["answered"] += 1
                job.future.set_result((done.result(), started - job.queued, time.perf_counter() - started))
            else:
                self.counts["failed"] += 1
                job.future.set_exception(error)
        while self._waiting:
            nxt = self._waiting.popleft()
            if not nxt.future.done():
                self._start(nxt)
                return
        self._idle += 1

    @property
    def depth(self) -> int:
        """Jobs waiting for the worker."""
        return len(self._waiting)


# ---------------------------------------------------------------- per-client colours


class Palettes:
    """Each client's overlay colours (RGBA by mask value), replaced whole so that no frame sees half an update."""

    def __init__(self, default: np.ndarray, max_clients: int = 1024):
        self.default = default
        self.max_clients = max_clients
        self._by_client: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, client: str) -> np.ndarray:
        """The client's colours, or labels.csv's until it sets its own."""
        return self._by_client.get(client, self.default)

    def set(self, client: str, palette: np.ndarray) -> None:
        """Swap in a new palette for the client (the old array is never written to)."""
        palette.flags.writeable = False
        self._by_client[client] = palette
        self._by_client.move_to_end(client)
        while len(self._by_client) > self.max_clients:  # a bounded table: forget the longest-idle client
            self._by_client.popitem(last=False)


def rgba_palette(palette: np.ndarray) -> np.ndarray:
    """An RGB palette as opaque RGBA, void (mask value 0) fully transparent."""
    out = np.concatenate([palette, np.full((len(palette), 1), 255, np.uint8)], axis=1)
    out[0] = 0
    out.flags.writeable = False
    return out


# ---------------------------------------------------------------- request and reply shapes (Unity's JsonUtility)


class Color32(BaseModel):
    """A Unity Color32: 0..255 per channel."""

    r: int = Field(ge=0, le=255)
    g: int = Field(ge=0, le=255)
    b: int = Field(ge=0, le=255)
    a: int = Field(255, ge=0, le=255)


class LabelColors(BaseModel):
    """PUT /set_label_colors: colours[i] for 0-based label index labels[i]; alpha 0 hides the label."""

    mime: str = ""
    labels: list[int]
    colors: list[Color32]


class Frame(BaseModel):
    """PUT /predict_image_text: a base64 PNG of the game camera."""

    mime: str = ""
    image64: str


class Tag(BaseModel):
    """Where the client puts a label's text tag, on its 64 x 64 grid, y downwards."""

    label: int = Field(description="0-based label index (mask value - 1)")
    labelPositionX: int = Field(ge=0, le=GRID - 1)
    labelPositionY: int = Field(ge=0, le=GRID - 1)


class FrameReply(BaseModel):
    """The overlay (RGBA PNG, base64) and the tags of the visible labels present."""

    mime: str
    image64: str
    labels: list[Tag]
    confidences: list[float] = Field(description="mean confidence of each entry of labels, in the same order")


class FoundClass(BaseModel):
    """One class present in the prediction."""

    label: int = Field(description="0-based label index, as the Unity client counts")
    value: int = Field(description="mask value (label + 1; 0 is void)")
    name: str
    group: str
    color: list[int]
    share: float = Field(description="fraction of the image's pixels")
    centroid: dict[str, float] = Field(description="x and y as fractions of width and height")
    confidence: float = Field(description="mean confidence over the class's pixels")


class Prediction(BaseModel):
    """POST /predict: classes present, confidence, timing, and the PNGs asked for (base64)."""

    width: int
    height: int
    classes: list[FoundClass]
    mean_confidence: float
    timing_ms: dict[str, float]
    mask_png: str | None = Field(None, description="L-mode PNG at the input's size, pixel value = mask value")
    overlay_png: str | None = Field(None, description="RGB PNG at the input's size, the classes over the image")


def _parse(model: type[BaseModel], body: bytes) -> Any:
    """A JSON body as `model`, whatever Content-Type came with it (the client's own header is not trusted)."""
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise BadInput(422, _describe(e.errors())) from None


def _describe(errors: list[Any]) -> str:
    """Pydantic's error list as one readable sentence."""
    parts = []
    for e in errors:
        where = ".".join(str(x) for x in e.get("loc", ()) if x != "body")
        parts.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "; ".join(parts)


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that parses `model` from JSON itself."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


class BodyLimit:
    """Refuses request bodies over `max_bytes` with 413, before and while reading them."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"the request body is over the limit of {self.max_bytes:,} bytes."
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > self.max_bytes:  # a chunked body that did not say its length
                raise HTTPException(413, message)
            return msg

        await self.app(scope, counted, send)


# ---------------------------------------------------------------- the app


def create_app(predictor: Predictor, cors_origins: list[str] | None = None, max_pixels: int = MAX_PIXELS,
               max_body_bytes: int = MAX_BODY_BYTES, waiting: int = 1, workers: int = 1) -> FastAPI:
    """The FastAPI app serving `predictor`: Unity's routes, /predict, /health, /labels, /app and /docs."""
    queue = InferenceQueue(waiting, workers)
    palettes = Palettes(rgba_palette(predictor.palette))
    n_labels = len(predictor.codes) - 1

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        queue.executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="Room segmentation", lifespan=lifespan,
                  description="Live predictions of an exported U-Net: the Unity client's routes and a JSON API. "
                              "Try photos at [/app](/app).")
    app.state.predictor, app.state.queue, app.state.palettes = predictor, queue, palettes
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "PUT", "POST"],
                           allow_headers=["Content-Type"])

    @app.exception_handler(BadInput)
    async def bad_input(request: Request, e: BadInput) -> JSONResponse:
        return JSONResponse({"detail": e.message}, status_code=e.status)

    @app.exception_handler(Shed)
    async def shed(request: Request, e: Shed) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=503)

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception) -> JSONResponse:
        # a bug, not the request's fault: still JSON for the client; uvicorn logs the traceback
        return JSONResponse({"detail": f"internal error ({e.__class__.__name__}); see the server's log."},
                            status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _describe(list(e.errors()))}, status_code=422)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    @app.get("/", summary="Unity client: is the server up")
    async def root() -> dict[str, str]:
        return {"root_response": "OK!"}

    @app.put("/set_label_colors", summary="Unity client: the overlay colour of each label",
             openapi_extra=_json_body(LabelColors))
    async def set_label_colors(request: Request) -> dict[str, str]:
        body = _parse(LabelColors, await request.body())
        if len(body.labels) != len(body.colors):
            raise BadInput(422, f"labels and colors must have the same length; got {len(body.labels)} labels and "
                                f"{len(body.colors)} colors.")
        bad = [i for i in body.labels if not 0 <= i < n_labels]
        if bad:
            raise BadInput(422, f"label indices must be 0..{n_labels - 1} (0-based rows of labels.csv); got {bad}.")
        # built whole, then swapped in with no await in between: a frame sees the old colours or the new ones
        palette = palettes.get(client_of(request)).copy()
        palette[np.array(body.labels, dtype=np.int64) + 1] = [(c.r, c.g, c.b, c.a) for c in body.colors]
        palettes.set(client_of(request), palette)
        return {"set_label_colors": "OK!"}

    @app.put("/predict_image_text", response_model=FrameReply, openapi_extra=_json_body(Frame),
             summary="Unity client: a camera frame in, the overlay and label tags out",
             responses={503: {"description": "dropped: a newer frame arrived first"}})
    async def predict_image_text(request: Request) -> JSONResponse:
        frame = _parse(Frame, await request.body())
        palette = palettes.get(client_of(request))
        reply, waited, worked = await queue.run(lambda: legacy_frame(predictor, frame.image64, palette, max_pixels))
        # the client reads the body only; the header tells a benchmark how much of the latency was the server's
        return JSONResponse(reply, headers={"Server-Timing": f"queue;dur={waited * 1000:.1f}, "
                                                             f"work;dur={worked * 1000:.1f}"})

    image_body = {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}}}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}}}

    @app.post("/predict", response_model=Prediction, response_model_exclude_none=True, openapi_extra=image_body,
              summary="A photo in (multipart file or raw PNG/JPEG body), the classes found out",
              responses={413: {"description": "body or image too large"}, 503: {"description": "busy"}})
    async def predict(request: Request,
                      mask: bool = Query(False, description="add the class mask as a PNG at the input's size"),
                      overlay: bool = Query(False, description="add the overlay as a PNG at the input's size"),
                      opacity: float = Query(0.5, ge=0, le=1, description="overlay opacity"),
                      groups: str | None = Query(None, description="comma-separated groups drawn on the overlay "
                                                                   "(default all), e.g. building,furniture")
                      ) -> dict[str, Any]:
        start = time.perf_counter()
        known = predictor.labels.groups
        chosen = None
        if groups is not None:
            chosen = tuple(g.strip() for g in groups.split(",") if g.strip())
            unknown = [g for g in chosen if g not in known]
            if unknown:
                raise BadInput(422, f"unknown group(s) {', '.join(unknown)}; the groups are {', '.join(known)}.")
        data = await _image_bytes(request)
        options = PredictOptions(mask, overlay, opacity, chosen)
        reply, waited, _ = await queue.run(lambda: predict_image(predictor, data, options, max_pixels), False)
        reply["timing_ms"]["queue"] = round(waited * 1000, 2)
        reply["timing_ms"]["total"] = round((time.perf_counter() - start) * 1000, 2)
        return reply

    @app.get("/health", summary="The model being served and the queue's counters")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.path.name, "resolution": predictor.resolution,
                "precision": precision_of(predictor), "provider": predictor.provider, "classes": len(predictor.codes),
                "queue": {"workers": queue.workers, "waiting": queue.depth, "max_waiting": queue.max_waiting,
                          **queue.counts},
                "memory_mb": memory_mb()}

    @app.get("/labels", summary="The classes: 0-based label index, mask value, name, group and colour")
    async def labels() -> dict[str, Any]:
        table = predictor.labels
        return {"labels": [{"label": i, "value": i + 1, "name": n, "group": group_of(n), "color": list(c)}
                           for i, (n, c) in enumerate(zip(table.names, table.colors))],
                "groups": table.groups}

    def openapi() -> dict[str, Any]:
        # the Unity routes parse their JSON themselves (whatever the Content-Type); list their models in the docs
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (LabelColors, Frame):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/app", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "app.html", media_type="text/html")

    return app


async def _image_bytes(request: Request) -> bytes:
    """The image of a /predict request: the first file of a multipart form, or the raw body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form()
        files = [v for v in form.values() if isinstance(v, UploadFile)]
        if not files:
            raise BadInput(400, "the form has no file: send the image as a file field (curl -F file=@photo.jpg).")
        return await files[0].read()
    data = await request.body()
    if not data:
        raise BadInput(400, "no image: send a PNG or JPEG as the body (Content-Type: image/png or image/jpeg) or "
                            "as a multipart file field.")
    return data


def memory_mb() -> float | None:
    """This process's resident memory in MiB (Linux), None where /proc is missing."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError, AttributeError):
        return None
    return round(pages * page_size / 2**20, 1)


# ---------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """Parse the options, load the model and serve until Ctrl-C; 2 with a message when it cannot start."""
    ap = argparse.ArgumentParser(prog="python -m helpers.server", description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help=f"an exported .onnx (default: the largest trained stage in "
                                               f"{MODELS_DIR})")
    ap.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where to look when --model is not given")
    ap.add_argument("--precision", choices=["int8", "fp32"], help="int8 serves the ONNX notebook's quantized copy "
                                                                   "(default fp32)")
    ap.add_argument("--host", default=HOST, help="address to listen on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=PORT)
    ap.add_argument("--cors-origin", action="append", default=[], metavar="URL",
                    help="let pages from this origin call the API (repeatable; none by default)")
    ap.add_argument("--max-pixels", type=int, default=MAX_PIXELS, help="largest image accepted, in pixels")
    ap.add_argument("--max-body-mb", type=float, default=MAX_BODY_BYTES / 2**20, help="largest request body, MiB")
    ap.add_argument("--threads", type=int, help="onnxruntime threads per run (default: one per core)")
    ap.add_argument("--workers", type=int, default=1, help="frames processed at once (default 1; 2 can help on a GPU, "
                                                           "where decoding the PNGs costs more than the model)")
    ap.add_argument("--access-log", action="store_true", help="log every request (20 a second per Unity client)")
    args = ap.parse_args(argv)
    try:
        predictor = load_predictor(args.model, args.precision, args.models_dir, args.threads)
    except ServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"error: --workers must be at least 1; got {args.workers}", file=sys.stderr)
        return 2
    app = create_app(predictor, args.cors_origin, args.max_pixels, int(args.max_body_mb * 2**20), workers=args.workers)
    url = f"http://{args.host}:{args.port}"
    print(f"serving {predictor.path} ({predictor.resolution}x{predictor.resolution}, {precision_of(predictor)}, "
          f"{predictor.provider}) on {url}: try photos at {url}/app, API docs at {url}/docs", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, access_log=args.access_log, log_level="info",
                timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
