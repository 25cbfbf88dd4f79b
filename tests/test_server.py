"""The live server over real HTTP on loopback: Unity's routes as the client sees them, the JSON API, bad input,
shedding under a burst, the command line, and the page in a headless browser."""
from __future__ import annotations

import asyncio
import base64
import http.client
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from helpers.export import export_onnx
from helpers.inference import Predictor
from helpers.labels import read_labels
from helpers.server import InferenceQueue, Shed, create_app

REPO = Path(__file__).resolve().parents[1]
LABELS = read_labels(REPO / "Assets" / "Data~" / "labels.csv")
N_LABELS = len(LABELS.names)
STEP = 10  # a pixel whose red value is STEP * k is predicted as class k (mask value k, label index k - 1)
RES = 32
MAX_PIXELS = 1_000_000
MAX_BODY = 3_000_000
BUILDING = LABELS.groups["building"]  # mask values


class RedClasses(torch.nn.Module):
    """Stands in for the U-Net: the class of a pixel is its red value / 10, so every expected answer is known."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0:1] * (0.229 * 255) + 0.485 * 255  # undo the export's ImageNet normalisation
        centres = torch.arange(LABELS.n_classes, dtype=torch.float32).view(1, -1, 1, 1) * STEP
        return -0.05 * (red - centres) ** 2


def stripes(values: list[int], width: int = 960, height: int = 540, alpha: bool = True) -> np.ndarray:
    """An image of equal vertical stripes, stripe i of class values[i]; RGBA like Unity's EncodeToPNG."""
    image = np.zeros((height, width, 4 if alpha else 3), np.uint8)
    if alpha:
        image[..., 3] = 255
    edges = np.linspace(0, width, len(values) + 1).astype(int)
    for value, left, right in zip(values, edges[:-1], edges[1:]):
        image[:, left:right, 0] = value * STEP
        image[:, left:right, 1] = 90  # some colour besides red, for the overlay arithmetic
    return image


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def unity_json(obj: dict) -> bytes:
    """JSON as Unity's JsonUtility writes it: no spaces, fields in declaration order."""
    return json.dumps(obj, separators=(",", ":")).encode()


def frame_body(pixels: np.ndarray) -> bytes:
    return unity_json({"mime": "mimey", "image64": base64.b64encode(png(pixels)).decode()})


def colors_body(labels: list[int], colors: list[tuple[int, int, int, int]]) -> bytes:
    return unity_json({"mime": "mimey", "labels": labels,
                       "colors": [{"r": r, "g": g, "b": b, "a": a} for r, g, b, a in colors]})


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("models") / f"unity_resnet34_{RES}x.onnx"
    export_onnx(RedClasses().eval(), path, RES, LABELS)
    return path


@contextmanager
def serving(app):
    """The app under uvicorn on a free loopback port, in a thread; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        srv.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture(scope="module")
def server(model_path: Path):
    """The real app serving the tiny model, with small limits so that the limit tests stay small."""
    with serving(create_app(Predictor(model_path, threads=1), max_pixels=MAX_PIXELS, max_body_bytes=MAX_BODY)) as port:
        yield port


def call(port: int, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
         source: str = "127.0.0.1", chunked: bool = False) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; `source` is the client's loopback address (its identity)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20, source_address=(source, 0))
    try:
        if chunked:
            conn.request(method, path, body=iter([body]), headers=headers or {}, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, reply.getheader("content-type", ""), reply.read()
    finally:
        conn.close()


def put_json(port: int, path: str, body: bytes, source: str = "127.0.0.1") -> tuple[int, dict]:
    status, kind, data = call(port, "PUT", path, body, {"Content-Type": "application/json"}, source)
    assert kind.startswith("application/json"), (status, kind, data[:200])
    return status, json.loads(data)


def loopback_alias_works() -> bool:
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.2", 0))
        return True
    except OSError:
        return False


aliases = pytest.mark.skipif(not loopback_alias_works(), reason="127.0.0.2 cannot be bound here (macOS?); the "
                                                                "per-client tests need several loopback addresses")

FRAME_CLASSES = list(range(0, 9))  # void, the four building classes, four furniture classes
# stripes of consecutive classes: where a resize blends two stripes it makes one of the two, never a third class
STRIPES = list(range(0, 7))


def check_legacy_reply(reply: dict, colors: np.ndarray) -> np.ndarray:
    """Check a /predict_image_text reply field by field against what the client reads; return the overlay."""
    assert set(reply) == {"mime", "image64", "labels", "confidences"}
    assert reply["mime"] == "image/png"
    overlay = Image.open(io.BytesIO(base64.b64decode(reply["image64"], validate=True)))
    assert overlay.format == "PNG" and overlay.mode == "RGBA" and overlay.size == (RES, RES)
    pixels = np.asarray(overlay)
    # the model sees the frame squeezed to RES x RES: stripe i covers columns (i + 0.5) * RES / 9 around its middle
    visible = [v for v in FRAME_CLASSES[1:] if colors[v, 3] > 0]
    assert [t["label"] for t in reply["labels"]] == [v - 1 for v in visible]
    for tag, value in zip(reply["labels"], visible):
        assert set(tag) == {"label", "labelPositionX", "labelPositionY"}
        assert all(type(v) is int for v in tag.values())
        x, y = tag["labelPositionX"], tag["labelPositionY"]
        assert 0 <= x <= 63 and 0 <= y <= 63
        # centroids are whole model pixels: one of them is 64 / RES cells of the grid
        assert abs(x - (FRAME_CLASSES.index(value) + 0.5) * 64 / len(FRAME_CLASSES)) <= 64 / RES + 0.5
        assert 31 <= y <= 32
    assert len(reply["confidences"]) == len(reply["labels"]) and all(0 < c <= 1 for c in reply["confidences"])
    for i, value in enumerate(FRAME_CLASSES):
        middle = int((i + 0.5) * RES / len(FRAME_CLASSES))
        assert (pixels[:, middle] == colors[value]).all(), (value, pixels[0, middle], colors[value])
    return pixels


def test_root_is_the_original_reply(server):
    status, kind, data = call(server, "GET", "/")
    assert status == 200 and json.loads(data) == {"root_response": "OK!"}


@aliases
def test_frame_before_any_colours_uses_labels_csv_and_void_is_transparent(server):
    status, reply = put_json(server, "/predict_image_text", frame_body(stripes(FRAME_CLASSES)), source="127.0.0.2")
    assert status == 200
    default = np.array([(0, 0, 0, 0), *[(*c, 255) for c in LABELS.colors]], np.uint8)
    pixels = check_legacy_reply(reply, default)
    assert (pixels[:, 0, 3] == 0).all()  # the void stripe


@aliases
def test_set_label_colors_hides_groups_per_client_and_atomically(server):
    # as the scene sends it after F1: every label, the building group with colour 0,0,0,0
    colors = [(0, 0, 0, 0) if v in BUILDING else (v * 9, 255 - v * 9, v, 255) for v in range(1, N_LABELS + 1)]
    status, reply = put_json(server, "/set_label_colors", colors_body(list(range(N_LABELS)), colors), "127.0.0.3")
    assert status == 200 and reply == {"set_label_colors": "OK!"}
    status, reply = put_json(server, "/predict_image_text", frame_body(stripes(FRAME_CLASSES)), source="127.0.0.3")
    assert status == 200
    expected = np.array([(0, 0, 0, 0), *colors], np.uint8)
    pixels = check_legacy_reply(reply, expected)
    assert all(t["label"] + 1 not in BUILDING for t in reply["labels"])  # hidden labels get no tag either
    assert (pixels[..., 3] == 0).mean() > 0.5  # void and four hidden stripes of nine
    # another client's colours are its own
    status, reply = put_json(server, "/predict_image_text", frame_body(stripes(FRAME_CLASSES)), source="127.0.0.4")
    check_legacy_reply(reply, np.array([(0, 0, 0, 0), *[(*c, 255) for c in LABELS.colors]], np.uint8))


def test_partial_colour_update_and_tags_of_any_frame_size(server):
    # only two labels: the others keep the colours they had
    status, _ = put_json(server, "/set_label_colors", colors_body([4, 3], [(1, 2, 3, 255), (7, 8, 9, 128)]))
    assert status == 200
    status, reply = put_json(server, "/predict_image_text", frame_body(stripes([4, 5, 4], 200, 700)))
    assert status == 200
    assert sorted(t["label"] for t in reply["labels"]) == [3, 4]
    assert all(0 <= t[k] <= 63 for t in reply["labels"] for k in ("labelPositionX", "labelPositionY"))
    pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["image64"]))))
    assert tuple(pixels[16, 16]) == (1, 2, 3, 255) and tuple(pixels[16, 0]) == (7, 8, 9, 128)


BAD_IMAGE = base64.b64encode(b"this is no picture").decode()
TRUNCATED = base64.b64encode(png(stripes([1, 2], 64, 64))[:60]).decode()
HUGE = base64.b64encode(png(np.zeros((1100, 1000, 3), np.uint8))).decode()  # 1.1 MP, tiny as a PNG
GOOD = {"r": 1, "g": 2, "b": 3, "a": 255}

BAD_INPUT = [  # (method, path, body, extra headers, status, words the message must contain)
    ("PUT", "/predict_image_text", b'{"mime":"mimey"}', {}, 422, "image64"),
    ("PUT", "/predict_image_text", b'{"mime":"mimey","image64":""}', {}, 400, "empty"),
    ("PUT", "/predict_image_text", b'{"mime":"mimey","image64":"%%% not base64 %%%"}', {}, 400, "base64"),
    ("PUT", "/predict_image_text", b'{"mime":"mimey","image64":42}', {}, 422, "image64"),
    ("PUT", "/predict_image_text", f'{{"image64":"{BAD_IMAGE}"}}'.encode(), {}, 400, "not an image"),
    ("PUT", "/predict_image_text", f'{{"image64":"{TRUNCATED}"}}'.encode(), {}, 400, "could not be decoded"),
    ("PUT", "/predict_image_text", f'{{"image64":"{HUGE}"}}'.encode(), {}, 413, "1,100,000 pixels"),
    ("PUT", "/predict_image_text", b'{"mime":"mimey","image64":', {}, 422, "JSON"),
    ("PUT", "/predict_image_text", b"x" * (MAX_BODY + 1), {}, 413, "body"),
    ("PUT", "/set_label_colors", unity_json({"labels": [N_LABELS], "colors": [GOOD]}), {}, 422, "0..22"),
    ("PUT", "/set_label_colors", unity_json({"labels": [-1], "colors": [GOOD]}), {}, 422, "0..22"),
    ("PUT", "/set_label_colors", unity_json({"labels": [0, 1], "colors": [GOOD]}), {}, 422, "same length"),
    ("PUT", "/set_label_colors", unity_json({"labels": [0], "colors": [{**GOOD, "r": 256}]}), {}, 422, "colors.0.r"),
    ("PUT", "/set_label_colors", unity_json({"labels": [0], "colors": [{**GOOD, "a": -1}]}), {}, 422, "colors.0.a"),
    ("PUT", "/set_label_colors", unity_json({"labels": "all", "colors": []}), {}, 422, "labels"),
    ("POST", "/predict", b"", {"Content-Type": "image/png"}, 400, "no image"),
    ("POST", "/predict", b"GIF89a nonsense", {"Content-Type": "image/png"}, 400, "not an image"),
    ("POST", "/predict", base64.b64decode(HUGE), {"Content-Type": "image/png"}, 413, "limit"),
    ("POST", "/predict", b"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n--b--\r\n",
     {"Content-Type": "multipart/form-data; boundary=b"}, 400, "no file"),
    ("POST", "/predict?opacity=2", png(stripes([1], 8, 8)), {"Content-Type": "image/png"}, 422, "opacity"),
    ("POST", "/predict?groups=building,nope", png(stripes([1], 8, 8)), {"Content-Type": "image/png"}, 422, "nope"),
]


@pytest.mark.parametrize("method, path, body, headers, status, words", BAD_INPUT,
                         ids=[f"{m} {p.split('?')[0]} {w}" for m, p, _, _, _, w in BAD_INPUT])
def test_bad_input_gets_a_4xx_with_a_message_and_never_spoils_the_next_request(server, method, path, body, headers,
                                                                              status, words):
    got, kind, data = call(server, method, path, body, {"Content-Type": "application/json", **headers},
                           source="127.0.0.5")
    assert got == status and kind.startswith("application/json"), (got, data[:300])
    detail = json.loads(data)["detail"]
    assert isinstance(detail, str) and words in detail and "Traceback" not in detail
    # the same client's next good frame is answered with the colours it had: a bad request changed nothing
    ok, reply = put_json(server, "/predict_image_text", frame_body(stripes(FRAME_CLASSES, 96, 54)), "127.0.0.5")
    assert ok == 200
    check_legacy_reply(reply, np.array([(0, 0, 0, 0), *[(*c, 255) for c in LABELS.colors]], np.uint8))


def test_chunked_body_over_the_limit_is_refused(server):
    status, kind, data = call(server, "POST", "/predict", b"x" * (MAX_BODY + 10), {"Content-Type": "image/png"},
                              chunked=True)
    assert status == 413 and "body" in json.loads(data)["detail"]


def test_predict_api_multipart_and_raw_body(server):
    photo = stripes(STRIPES, 350, 120, alpha=False)
    boundary = "XyZ"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"room.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png(photo) + f"\r\n--{boundary}--\r\n".encode()
    status, _, data = call(server, "POST", "/predict?mask=true&overlay=true&groups=furniture", form,
                           {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, data[:300]
    reply = json.loads(data)
    assert (reply["width"], reply["height"]) == (350, 120)
    assert sorted(c["value"] for c in reply["classes"]) == STRIPES[1:]
    for c in reply["classes"]:
        assert c["label"] == c["value"] - 1 and c["name"] == LABELS.names[c["label"]]
        assert c["group"] == c["name"].split("_")[0] and c["color"] == list(LABELS.colors[c["label"]])
        assert abs(c["share"] - 1 / 7) < 0.05 and 0.4 < c["centroid"]["y"] < 0.6 and 0 < c["confidence"] <= 1
        assert abs(c["centroid"]["x"] - (STRIPES.index(c["value"]) + 0.5) / 7) < 0.04
    assert 0 < reply["mean_confidence"] <= 1
    assert {"decode", "model", "postprocess", "queue", "total"} <= set(reply["timing_ms"])
    mask = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["mask_png"]))))
    assert mask.shape == (120, 350) and set(np.unique(mask)) == set(STRIPES)
    assert mask[60, 25] == 0 and mask[60, 75] == 1 and mask[60, 325] == 6
    over = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["overlay_png"]))))
    assert over.shape == (120, 350, 3)
    assert (over[60, 75] == photo[60, 75]).all()  # building is not among the groups asked for
    assert not (over[60, 275] == photo[60, 275]).all()  # furniture is painted
    status, _, raw = call(server, "POST", "/predict", png(photo), {"Content-Type": "image/png"})
    raw_reply = json.loads(raw)
    assert status == 200 and raw_reply["classes"] == reply["classes"] and "mask_png" not in raw_reply


def test_health_labels_docs_and_page(server, model_path):
    health = json.loads(call(server, "GET", "/health")[2])
    assert health["model"] == model_path.name and health["resolution"] == RES and health["precision"] == "fp32"
    assert health["provider"] == "CPUExecutionProvider" and health["memory_mb"] > 0
    labels = json.loads(call(server, "GET", "/labels")[2])
    assert [row["name"] for row in labels["labels"]] == list(LABELS.names) and labels["labels"][0]["label"] == 0
    assert list(labels["groups"]) == ["building", "furniture", "items", "live"]
    status, kind, page = call(server, "GET", "/docs")
    assert status == 200 and b"swagger" in page.lower()
    schema = json.loads(call(server, "GET", "/openapi.json")[2])
    assert {"/", "/set_label_colors", "/predict_image_text", "/predict", "/health", "/labels"} <= set(schema["paths"])
    assert {"LabelColors", "Color32", "Frame"} <= set(schema["components"]["schemas"])
    status, kind, page = call(server, "GET", "/app")
    assert status == 200 and kind.startswith("text/html") and b'id="file"' in page


def test_a_burst_of_frames_is_answered_or_shed_never_failed(server):
    body = frame_body(stripes(FRAME_CLASSES, 480, 270))
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: call(server, "PUT", "/predict_image_text", body,
                                               {"Content-Type": "application/json"}), range(64)))
    statuses = [s for s, _, _ in results]
    assert set(statuses) <= {200, 503} and statuses.count(200) >= 1, statuses
    for status, kind, data in results:
        reply = json.loads(data)
        assert kind.startswith("application/json") and (set(reply) == {"detail"} if status == 503 else reply["labels"])
    status, _, _ = call(server, "PUT", "/predict_image_text", body, {"Content-Type": "application/json"})
    assert status == 200


@aliases
def test_colours_change_whole_under_concurrent_frames(server):
    """A client flipping between two palettes while its frames are in flight: each overlay is all one or the other."""
    palettes = [[(v, green, 20, 255) for v in range(1, N_LABELS + 1)] for green in (10, 200)]
    bodies = [colors_body(list(range(N_LABELS)), p) for p in palettes]
    frame = frame_body(stripes(FRAME_CLASSES, 96, 54))

    def work(i: int):
        if i % 2:
            return put_json(server, "/set_label_colors", bodies[(i // 2) % 2], "127.0.0.6")
        return put_json(server, "/predict_image_text", frame, "127.0.0.6")

    assert put_json(server, "/set_label_colors", bodies[0], "127.0.0.6")[0] == 200
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(60)))
    overlays = [r for s, r in results if "image64" in r and s == 200]
    assert overlays and all(s in (200, 503) for s, _ in results)
    for reply in overlays:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(reply["image64"]))))
        greens = set(np.unique(pixels[pixels[..., 3] > 0][:, 1]).tolist())
        assert greens in ({10}, {200}), greens


def test_a_slow_model_answers_the_newest_frame_sheds_the_rest_at_once_and_stays_responsive(model_path):
    predictor = Predictor(model_path, threads=1)
    model_run = predictor.run

    run_time = 0.9  # a model much slower than the frames come

    def slow_run(batch):
        time.sleep(run_time)
        return model_run(batch)

    predictor.run = slow_run
    body = frame_body(stripes(FRAME_CLASSES, 96, 54))
    with serving(create_app(predictor)) as port, ThreadPoolExecutor(8) as pool:
        def send(i: int) -> tuple[int, float, float]:
            time.sleep(0.1 * i)  # frames 100 ms apart, not waiting for replies, as the scene sends them
            t0 = time.perf_counter()
            status = call(port, "PUT", "/predict_image_text", body, {"Content-Type": "application/json"})[0]
            return status, t0, time.perf_counter() - t0

        futures = [pool.submit(send, i) for i in range(6)]
        time.sleep(0.15)
        t0 = time.perf_counter()
        assert call(port, "GET", "/")[0] == 200
        assert time.perf_counter() - t0 < run_time / 2  # the event loop is free while the model runs
        results = [f.result() for f in futures]
    statuses = [s for s, _, _ in results]
    # the first frame runs at once; of those sent while it runs, only the newest waits; the others are shed
    assert statuses == [200, 503, 503, 503, 503, 200], statuses
    assert all(latency < run_time / 2 for s, _, latency in results if s == 503)
    assert results[-1][2] < 2 * run_time  # the newest frame waited for one run at most: no backlog


def queue_outcomes(workers: int, sheddable: list[bool]) -> list:
    """What becomes of jobs 0, 1, ... sent at once to a queue with one waiting place: their results or 'shed'."""
    async def scenario() -> list:
        queue = InferenceQueue(waiting=1, workers=workers)

        def job(i: int) -> int:
            time.sleep(0.05)
            return i

        async def one(i: int, can_shed: bool):
            try:
                return (await queue.run(lambda: job(i), can_shed))[0]
            except Shed:
                return "shed"

        try:
            return await asyncio.gather(*(one(i, s) for i, s in enumerate(sheddable)))
        finally:
            queue.executor.shutdown()

    return asyncio.run(scenario())


def test_queue_answers_the_newest_frames_and_sheds_the_older_ones():
    assert queue_outcomes(1, [True] * 5) == [0, "shed", "shed", "shed", 4]
    assert queue_outcomes(2, [True] * 5) == [0, 1, "shed", "shed", 4]  # two run at once, the newest other waits
    # a waiting /predict job is never pushed out by frames: the newer frame is refused instead
    assert queue_outcomes(1, [True, False, True]) == [0, 1, "shed"]


def test_command_line_serves_the_largest_stage_and_fails_clearly(model_path, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(model_path, models / "unity_resnet34_16x.onnx")
    shutil.copy(model_path, models / f"unity_resnet34_{RES}x.onnx")
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "helpers.server"]
    # all four start at once: each one imports onnxruntime and FastAPI, which takes a second or two
    failing = {"SegmentationLearner.ipynb": ["--models-dir", str(tmp_path / "empty")],
               "not a loadable ONNX model": ["--model", str(tmp_path / "bad.onnx")],
               "ONNX.ipynb": ["--models-dir", str(models), "--precision", "int8"]}
    procs = {k: subprocess.Popen(cmd + a, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for k, a in failing.items()}
    serving = subprocess.Popen(cmd + ["--models-dir", str(models), "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for words, proc in procs.items():
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 2 and words in err and "Traceback" not in err + out, err
        deadline = time.monotonic() + 60
        while True:
            try:
                health = json.loads(call(port, "GET", "/health")[2])
                break
            except OSError:
                assert serving.poll() is None and time.monotonic() < deadline, serving.stdout.read()
                time.sleep(0.2)
        assert health["model"] == f"unity_resnet34_{RES}x.onnx"
    finally:
        serving.send_signal(signal.SIGINT)
        out = serving.communicate(timeout=20)[0]
    assert "Traceback" not in out and f"unity_resnet34_{RES}x.onnx" in out


def find_chromium() -> tuple[str | None, str | None]:
    browser = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
    driver = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists()
                                              else None)
    return browser, driver


@pytest.mark.skipif(None in find_chromium(), reason="no chromium and chromium-driver installed "
                                                    "(apt-get install chromium chromium-driver; .ci/run does it)")
def test_page_shows_an_overlay_and_legend_for_an_upload(server, tmp_path):
    browser, driver_path = find_chromium()
    photo = stripes(STRIPES, 420, 200, alpha=False)
    path = tmp_path / "room.png"
    path.write_bytes(png(photo))
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1200,900"):
        options.add_argument(arg)
    # a driver path given means Selenium Manager never downloads one
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        driver.get(f"http://127.0.0.1:{server}/app")
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#groups input")) == 4)
        driver.find_element(By.ID, "file").send_keys(str(path))
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#legend li")) > 0)
        items = driver.find_elements(By.CSS_SELECTOR, "#legend li")
        assert sorted(li.text.split("\n")[0] for li in items) == sorted(LABELS.names[v - 1] for v in STRIPES[1:])
        assert "ms" in driver.find_element(By.ID, "time").text and not driver.find_element(By.ID, "error").text
        # a pixel of row 20, above the text tags
        pixel = "const c = document.getElementById('overlay'); " \
                "return Array.from(c.getContext('2d').getImageData(arguments[0], 20, 1, 1).data);"
        assert driver.execute_script("return document.getElementById('overlay').width") == 420
        # the floor stripe (mask value 2) is blended half and half with its colour
        floor = np.array(driver.execute_script(pixel, 150)[:3])
        assert np.abs(floor - (photo[20, 150] * 0.5 + np.array(LABELS.colors[1]) * 0.5)).max() <= 2
        driver.find_element(By.CSS_SELECTOR, "#groups input[data-group='building']").click()  # as F1
        hidden = driver.find_elements(By.CSS_SELECTOR, "#legend li.hidden")
        assert [li.get_attribute("data-group") for li in hidden] == ["building"] * 4
        assert driver.execute_script(pixel, 150)[:3] == photo[20, 150].tolist()
        assert driver.execute_script(pixel, 330)[:3] != photo[20, 330].tolist()  # furniture still painted
    finally:
        driver.quit()
