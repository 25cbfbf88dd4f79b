"""Plays the Unity client against a running server: frames per second answered, latency, shedding and memory.

    python -m benchmarks.server [--url http://127.0.0.1:4200] [--clients 4] [--fps 20] [--seconds 30]

Each client sets the label colours, then sends 960x540 RGBA PNG frames (as Texture2D.EncodeToPNG) at a fixed
rate for a fixed time without waiting for replies, as the scene does. Prints, per client and in all: frames
answered per second, p50/p95/max latency of the answered frames, p95 of the first and last third (flat means no
backlog), counts of 2xx, 503 (shed) and other replies and connection errors, and the server's memory before and
after; the last line is JSON. Exits 1 when any reply was neither 2xx nor 503 or a connection failed.
Only loopback addresses are allowed; client k sends from 127.0.0.(k+1), so each has its own colours.
"""
from __future__ import annotations

import argparse
import base64
import http.client
import io
import ipaddress
import json
import re
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

FRAME_SIZE = (960, 540)  # the scene's default capture


@dataclass
class Result:
    """One frame's fate."""

    client: int
    index: int
    status: int | None  # None: the connection failed
    latency: float  # seconds from send to the last byte of the reply
    server: float | None = None  # seconds of it the server spent queueing and working (its Server-Timing header)


def loopback_host(url: str) -> tuple[str, int]:
    """Host and port of a loopback URL; anything else is refused (this tool only loads this machine)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if parts.scheme != "http" or not ok:
        raise ValueError(f"{url} is not an http:// URL on a loopback address (127.0.0.1, localhost, [::1])")
    return ("127.0.0.1" if host == "localhost" else host), parts.port or 80


def frames(data: Path, count: int = 8) -> list[bytes]:
    """Unity-like request bodies: screenshots of the dataset (or drawn rooms) as 960x540 RGBA PNGs in JSON."""
    files = sorted((data / "screenshots").glob("*.png"))[:count] if (data / "screenshots").is_dir() else []
    images = [Image.open(f).convert("RGB").resize(FRAME_SIZE, Image.Resampling.BILINEAR) for f in files]
    rng = np.random.default_rng(0)
    while len(images) < count:  # no dataset: flat walls and floor with a few boxes, about as compressible
        w, h = FRAME_SIZE
        img = np.zeros((h, w, 3), np.uint8)
        img[: h // 2] = rng.integers(90, 200, 3)
        img[h // 2:] = rng.integers(40, 150, 3)
        for _ in range(6):
            x, y = rng.integers(0, w - 200), rng.integers(h // 3, h - 120)
            img[y:y + rng.integers(40, 120), x:x + rng.integers(60, 200)] = rng.integers(0, 256, 3)
        img = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(img))
    bodies = []
    for image in images:
        buf = io.BytesIO()
        image.convert("RGBA").save(buf, format="PNG")
        bodies.append(json.dumps({"mime": "mimey", "image64": base64.b64encode(buf.getvalue()).decode()},
                                 separators=(",", ":")).encode())
    return bodies


class Client:
    """One simulated scene: its own loopback source address and keep-alive connections, one per sending thread."""

    def __init__(self, number: int, host: str, port: int, timeout: float):
        self.number, self.host, self.port, self.timeout = number, host, port, timeout
        self.source = source_address(number) if host != "::1" else None
        self.local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, str]:
        """Status and body of one request on this thread's keep-alive connection."""
        conn = getattr(self.local, "conn", None)
        if conn is not None:
            try:
                return self._send(conn, method, path, body)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                pass  # the server closed the idle connection: a fresh one, as any HTTP client (and libcurl) does
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout,
                                          source_address=(self.source, 0) if self.source else None)
        self.local.conn = conn
        return self._send(conn, method, path, body)

    def _send(self, conn: http.client.HTTPConnection, method: str, path: str, body: bytes | None
              ) -> tuple[int, bytes, str]:
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            reply = conn.getresponse()
            return reply.status, reply.read(), reply.getheader("Server-Timing", "")
        except Exception:
            conn.close()
            self.local.conn = None
            raise


def source_address(number: int) -> str:
    """127.0.0.(number+1) where the system allows it, else 127.0.0.1 (the clients then share their colours)."""
    address = f"127.0.0.{number + 1}"
    try:
        with socket.socket() as s:
            s.bind((address, 0))
        return address
    except OSError:
        return "127.0.0.1"


def run_client(client: Client, bodies: list[bytes], colours: bytes, fps: float, seconds: float,
               start: float) -> list[Result]:
    """Set the colours, then send frames on schedule without waiting; every frame's result."""
    status, reply, _ = client.request("PUT", "/set_label_colors", colours)
    if status != 200:
        raise RuntimeError(f"/set_label_colors answered {status}: {reply[:300]!r}")
    n = int(fps * seconds)
    results: list[Result | None] = [None] * n

    def send(i: int) -> None:
        t0 = time.perf_counter()
        server = None
        try:
            status, _, timing = client.request("PUT", "/predict_image_text", bodies[i % len(bodies)])
            server = server_seconds(timing)
        except OSError:
            status = None
        results[i] = Result(client.number, i, status, time.perf_counter() - t0, server)

    # enough threads that a slow reply never holds back the next send: the scene does not wait either
    with ThreadPoolExecutor(max_workers=min(n, 64)) as pool:
        for i in range(n):
            delay = start + i / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i)
    return [r for r in results if r is not None]


def server_seconds(header: str) -> float | None:
    """The sum of a Server-Timing header's durations, in seconds (None when absent)."""
    durations = re.findall(r"dur=([\d.]+)", header)
    return sum(map(float, durations)) / 1000 if durations else None


def summary(results: list[Result], seconds: float) -> dict:
    """The figures of a set of frames."""
    ok = [r for r in results if r.status is not None and 200 <= r.status < 300]
    lat = np.array([r.latency for r in ok]) * 1000
    n = max(r.index for r in results) + 1 if results else 0
    first = np.array([r.latency for r in ok if r.index < n / 3]) * 1000
    last = np.array([r.latency for r in ok if r.index >= 2 * n / 3]) * 1000
    server = np.array([r.server for r in ok if r.server is not None]) * 1000
    def pct(a: np.ndarray, q: float) -> float | None:
        return round(float(np.percentile(a, q)), 1) if len(a) else None

    return {"frames": len(results), "answered_per_s": round(len(ok) / seconds, 2),
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": round(float(lat.max()), 1) if len(lat) else None,
            "p95_first_third_ms": pct(first, 95), "p95_last_third_ms": pct(last, 95),
            "server_p50_ms": pct(server, 50), "server_p95_ms": pct(server, 95),
            "2xx": len(ok), "503": sum(r.status == 503 for r in results),
            "other": sum(r.status is not None and r.status != 503 and not 200 <= r.status < 300 for r in results),
            "connection_errors": sum(r.status is None for r in results)}


def main(argv: list[str] | None = None) -> int:
    """Run the clients and print the figures; 1 when a reply failed."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.server", description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:4200", help="the running server (loopback only)")
    ap.add_argument("--clients", type=int, default=1, help="simulated scenes sending at once (e.g. 4)")
    ap.add_argument("--fps", type=float, default=20, help="frames per second per client (the scene's TargetFPS)")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--data", type=Path, default=Path("Assets/Data~"), help="screenshots to send, when there are")
    ap.add_argument("--timeout", type=float, default=30, help="seconds before a reply counts as a failure")
    args = ap.parse_args(argv)
    try:
        host, port = loopback_host(args.url)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    probe = Client(0, host, port, args.timeout)
    try:
        health = json.loads(probe.request("GET", "/health")[1])
        labels = json.loads(probe.request("GET", "/labels")[1])["labels"]
    except (OSError, ValueError) as e:
        print(f"error: no server at {args.url} ({e}); start one with `make serve`.", file=sys.stderr)
        return 1
    colours = json.dumps({"mime": "mimey", "labels": [row["label"] for row in labels],
                          "colors": [dict(zip("rgba", (*row["color"], 255))) for row in labels]},
                         separators=(",", ":")).encode()
    bodies = frames(args.data)
    print(f"{health['model']} ({health['resolution']}x{health['resolution']}, {health['precision']}, "
          f"{health['provider']}): {args.clients} client(s) x {args.fps:g} frames/s x {args.seconds:g} s, "
          f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]} RGBA PNG frames of {np.mean([len(b) for b in bodies]) / 1e6:.2f} MB")
    clients = [Client(k, host, port, args.timeout) for k in range(args.clients)]
    start = time.perf_counter() + 0.5
    try:
        with ThreadPoolExecutor(max_workers=args.clients) as pool:
            per_client = list(pool.map(lambda c: run_client(c, bodies, colours, args.fps, args.seconds, start),
                                       clients))
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    after = json.loads(probe.request("GET", "/health")[1])
    rows = [summary(r, args.seconds) for r in per_client]
    total = summary([r for rs in per_client for r in rs], args.seconds)
    head = (f"{'client':>8} {'answered/s':>10} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95 1st/3':>10} "
            f"{'p95 3rd/3':>10} {'2xx':>6} {'503':>6} {'other':>6} {'conn err':>8}")
    print(head)
    for name, row in [*((str(c.source or k), r) for k, (c, r) in enumerate(zip(clients, rows))), ("all", total)]:
        def cell(v: float | None) -> str:
            return "-" if v is None else f"{v}"

        print(f"{name:>8} {row['answered_per_s']:>10} {cell(row['p50_ms']):>8} {cell(row['p95_ms']):>8} "
              f"{cell(row['max_ms']):>8} {cell(row['p95_first_third_ms']):>10} {cell(row['p95_last_third_ms']):>10} "
              f"{row['2xx']:>6} {row['503']:>6} {row['other']:>6} {row['connection_errors']:>8}")
    print(f"of which in the server (queue + work, p50 / p95): {total['server_p50_ms']} / {total['server_p95_ms']} ms; "
          f"server memory: {health['memory_mb']} MiB before, {after['memory_mb']} MiB after")
    out = {"model": health["model"], "precision": health["precision"], "provider": health["provider"],
           "clients": args.clients, "fps": args.fps, "seconds": args.seconds, **total,
           "per_client": rows, "memory_mb_before": health["memory_mb"], "memory_mb_after": after["memory_mb"]}
    print(json.dumps(out))
    return 1 if total["other"] or total["connection_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
