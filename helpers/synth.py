"""The room generator: renders random 3D bedrooms into a dataset in the Unity generator's exact format.

    python -m helpers.synth --out "Assets/Data~" --n 200 [--size 960x540] [--seed 0] [--workers 2]
    python -m helpers.synth --benchmark
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from embreex import rtcore_scene
from embreex.mesh_construction import TriangleMesh
from PIL import Image
from scipy import ndimage
from tqdm.auto import tqdm

from helpers.files import atomic_write_bytes
from helpers.labels import BEDROOM, LabelTable, format_labels, parse_labels, read_labels
from helpers.room import CHECKER, NOISE, STRIPES, RoomBuilder, Scene, build_room


class GeneratorError(ValueError):
    """A dataset the generator must not write into, with what to do instead."""


def look_at(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Camera basis (right, up, forward) as rows for a camera at `eye` looking at `target`."""
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(right, forward), forward])


def place_camera(rng: np.random.Generator, room: RoomBuilder, aspect: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Eye, basis and vertical field of view of a person photographing the room.

    The eye stands on free floor, the farthest from the centre of a few tries (photos are taken from the
    edges of a room, looking across it), at chest to eye height, turned towards the centre give or take,
    level or looking slightly down; the horizontal field of view is that of phone and compact cameras."""
    W, D = room.W, room.D
    tries = [p for p in (room.free_floor_point(0.35) for _ in range(3)) if p is not None] or [(W / 2, D / 2)]
    p = max(tries, key=lambda q: np.hypot(q[0] - W / 2, q[1] - D / 2))
    eye = np.array([p[0], rng.uniform(1.1, 1.7), p[1]])
    to_centre = np.array([W / 2, 0.0, D / 2]) - eye
    if np.hypot(to_centre[0], to_centre[2]) < 0.5:  # standing at the centre: any heading works
        to_centre[[0, 2]] = np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)
    yaw = np.arctan2(to_centre[0], to_centre[2]) + rng.uniform(-0.6, 0.6)
    pitch = rng.uniform(-0.3, 0.15)
    forward = np.array([np.sin(yaw) * np.cos(pitch), np.sin(pitch), np.cos(yaw) * np.cos(pitch)])
    fov_x = np.radians(rng.uniform(55, 80))
    return eye, look_at(eye, eye + forward), float(2 * np.arctan(np.tan(fov_x / 2) / aspect))


def pattern(points: np.ndarray, mats: np.ndarray) -> np.ndarray:
    """Procedural texture value in [0, 1] per hit point from its material's pattern kind, frequency and axis."""
    kind, freq, axis = mats[:, 6], mats[:, 7], mats[:, 8:11]
    along = (points * axis).sum(1) * freq
    stripes = 0.5 + 0.5 * np.sin(along + 0.6 * np.sin(points[:, 1] * freq * 0.37))
    noise = 0.5 + 0.25 * (
        np.sin(points[:, 0] * freq * 1.3 + np.sin(points[:, 2] * freq))
        + np.sin(points[:, 2] * freq * 0.9 + np.sin(points[:, 1] * freq * 1.1))
    )
    checker = (np.floor(points * freq[:, None] * 0.5).sum(1) % 2).astype(np.float32)
    return np.select([kind == STRIPES, kind == NOISE, kind == CHECKER], [stripes, noise, checker], 0.0)


def render(
    scene: Scene, eye: np.ndarray, basis: np.ndarray, fov_y: float, width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Ray-cast the scene: an RGB uint8 image and its exact index mask, one ray per pixel."""
    triangles, face_class, face_material, materials = scene.arrays()
    embree = rtcore_scene.EmbreeScene()
    TriangleMesh(embree, triangles)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12

    tan_y = np.tan(fov_y / 2)
    tan_x = tan_y * width / height
    u = (np.arange(width, dtype=np.float32) + 0.5) / width * 2 - 1
    v = 1 - (np.arange(height, dtype=np.float32) + 0.5) / height * 2
    uu, vv = np.meshgrid(u * tan_x, v * tan_y)
    dirs = uu.reshape(-1, 1) * basis[0] + vv.reshape(-1, 1) * basis[1] + basis[2]
    dirs = (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).astype(np.float32)
    origins = np.broadcast_to(eye.astype(np.float32), dirs.shape).copy()

    hit = embree.run(origins, dirs, output=1)
    face, dist = hit["primID"], hit["tfar"]
    missed = face < 0
    face = np.where(missed, 0, face)
    mask = np.where(missed, 0, face_class[face]).astype(np.uint8)

    points = origins + dirs * np.where(missed, 0, dist)[:, None]
    n = normals[face]
    n *= -np.sign((n * dirs).sum(1, keepdims=True))  # face the camera: one-sided normals don't matter
    mats = materials[face_material[face]]
    t = pattern(points, mats)[:, None]
    albedo = mats[:, 0:3] * (1 - t) + mats[:, 3:6] * t

    glow = mats[:, 11:12]
    # bounce light, a little stronger on surfaces facing up
    light = np.full((len(points), 1), rng.uniform(0.25, 0.6), dtype=np.float32) * (0.85 + 0.15 * n[:, 1:2])
    start = (points + n * 2e-3).astype(np.float32)
    for pos, power in scene.lights:
        to_light = pos.astype(np.float32) - start
        d = np.linalg.norm(to_light, axis=1, keepdims=True)
        to_light /= d
        lambert = (n * to_light).sum(1, keepdims=True)
        lit = np.flatnonzero((lambert[:, 0] > 0) & (glow[:, 0] == 0))
        visible = np.zeros(len(points), dtype=bool)
        visible[lit] = embree.run(start[lit], to_light[lit], query="OCCLUDED", dists=d[lit, 0] - 1e-3) == -1
        light += visible[:, None] * lambert * power * 3.0 / (1.0 + d * d)
    colour = np.where(glow > 0, albedo * glow, albedo * light)
    colour = np.where(missed[:, None], 0, colour).reshape(height, width, 3)
    return photograph(colour, rng), mask.reshape(height, width)


def photograph(colour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A camera's photo of linear scene colour: exposure, white balance, tone curve, vignetting, blur, noise, JPEG."""
    height, width, _ = colour.shape
    lum = colour.mean(2)
    colour = colour * (rng.uniform(0.7, 1.0) / max(float(np.percentile(lum, 95)), 1e-3))  # auto-exposure
    warm = rng.uniform(-0.06, 0.15)  # indoor photos are mostly warm
    colour = colour * np.array([1 + warm, 1.0, 1 - warm], dtype=np.float32)
    srgb = np.clip(colour, 0, 1) ** (1 / rng.uniform(2.0, 2.4))
    srgb = srgb + rng.uniform(0.0, 0.15) * (srgb - srgb * srgb) * (2 * srgb - 1)  # a gentle S-curve
    yy, xx = np.ogrid[0:height, 0:width]
    r2 = ((xx / width - 0.5) ** 2 + (yy / height - 0.5) ** 2) / 0.5
    srgb = srgb * (1 - rng.uniform(0, 0.35) * r2)[..., None]
    sigma = rng.uniform(0, 1.2) * width / 960
    if sigma > 0.3:
        srgb = ndimage.gaussian_filter(srgb, sigma=(sigma, sigma, 0))
    srgb = srgb + rng.normal(0, rng.uniform(0.004, 0.02), srgb.shape)
    image = np.clip(srgb * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, format="JPEG", quality=int(rng.integers(55, 95)))
        image = np.array(Image.open(buf).convert("RGB"))
    return image


def render_sample(seed: int, index: int, width: int, height: int, labels: LabelTable) -> tuple[np.ndarray, np.ndarray]:
    """Image `index` of a dataset: a new random room and camera drawn from (seed, index) only."""
    rng = np.random.default_rng([seed, index])
    scene, room = build_room(rng, labels)
    eye, basis, fov = place_camera(rng, room, width / height)
    return render(scene, eye, basis, fov, width, height, rng)


def png_bytes(array: np.ndarray) -> bytes:
    """PNG bytes of a uint8 array: RGB for (H, W, 3), 8-bit greyscale for (H, W)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_sample(job: tuple[Path, int, int, int, int, LabelTable]) -> np.ndarray:
    """Render and write screenshots/i.png and labels/i.png; return the mask's per-class pixel counts."""
    out, seed, index, width, height, labels = job
    image, mask = render_sample(seed, index, width, height, labels)
    atomic_write_bytes(out / "screenshots" / f"{index}.png", png_bytes(image))
    atomic_write_bytes(out / "labels" / f"{index}.png", png_bytes(mask))
    return np.bincount(mask.ravel(), minlength=labels.n_classes)


def generate(
    out: Path, n: int, width: int, height: int, seed: int = 0, workers: int = 1, start: int = 0, progress: bool = True
) -> np.ndarray:
    """Write images start..start+n-1 and labels.csv into `out`; return per-class pixel counts."""
    labels = parse_labels(BEDROOM)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "labels.csv"
    if csv_path.exists() and read_labels(csv_path) != labels:
        raise GeneratorError(
            f"{csv_path} has other classes than the generator's bedroom scene; "
            "write to an empty folder instead of mixing two datasets."
        )
    if not csv_path.exists():
        atomic_write_bytes(csv_path, format_labels(labels).encode())
    jobs = [(out, seed, i, width, height, labels) for i in range(start, start + n)]
    counts = np.zeros(labels.n_classes, dtype=np.int64)
    bar = tqdm(total=n, unit="img", desc=f"rendering {width}x{height}", disable=not progress)
    if workers <= 1:
        results = map(write_sample, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        results = pool.map(write_sample, jobs, chunksize=1)
    for c in results:
        counts += c
        bar.update()
    bar.close()
    if workers > 1:
        pool.shutdown()
    return counts


def frequency_report(counts: np.ndarray, labels: LabelTable) -> str:
    """Per-class pixel share, flagging classes that never occur."""
    total = counts.sum()
    lines = [f"{'value':>5}  {'class':<24}{'pixels':>12}{'share':>9}"]
    for value, (name, c) in enumerate(zip(labels.codes, counts)):
        flag = "   <- never occurs" if c == 0 else ""
        lines.append(f"{value:>5}  {name:<24}{c:>12}{c / max(total, 1):>8.3%}{flag}")
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    """'960x540' -> (960, 540), with a clear error otherwise."""
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT in pixels, like 960x540; got {text!r}")
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size must be between 8 and 8192 pixels per side; got {text!r}")
    return w, h


def benchmark(width: int, height: int, workers: int, n: int) -> None:
    """Print images/s and peak memory of rendering `n` images with `workers` processes."""
    with tempfile.TemporaryDirectory() as tmp:
        generate(Path(tmp), workers, width, height, seed=1, workers=workers, start=10_000, progress=False)  # warm-up
        t0 = time.perf_counter()
        generate(Path(tmp), n, width, height, seed=1, workers=workers, progress=False)
        seconds = time.perf_counter() - t0
    peak_mb = (
        max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
        / 1024
    )
    print(f"rendered {n} images at {width}x{height} with {workers} worker(s) in {seconds:.1f} s")
    print(f"images/s: {n / seconds:.2f}")
    print(f"peak memory of one process: {peak_mb:.0f} MB")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(prog="python -m helpers.synth", description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, help="dataset folder (gets labels.csv, screenshots/, labels/)")
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--size", type=parse_size, default=(960, 540), help="WIDTHxHEIGHT (default 960x540)")
    ap.add_argument("--seed", type=int, default=0, help="image i depends only on (seed, i)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes (default: all cores)")
    ap.add_argument("--start", type=int, default=0, help="first image number, to extend a dataset")
    ap.add_argument("--benchmark", action="store_true", help="print images/s and peak memory, write nothing")
    args = ap.parse_args(argv)
    width, height = args.size
    if args.benchmark:
        benchmark(width, height, max(1, args.workers), max(args.n if args.n != 200 else 24, 1))
        return 0
    if args.out is None:
        ap.error("--out DIR is required (the dataset folder to write)")
    if args.n < 1:
        ap.error(f"--n must be at least 1; got {args.n}")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=args.out, prefix=".write-test-")
        probe.close()
    except OSError as e:
        print(f"error: cannot write to {args.out}: {e.strerror}. Choose a folder you can write to.", file=sys.stderr)
        return 2
    existing = list((args.out / "screenshots").glob("*.png")) if (args.out / "screenshots").is_dir() else []
    clash = {f"{i}.png" for i in range(args.start, args.start + args.n)} & {p.name for p in existing}
    if clash:
        print(
            f"error: {args.out / 'screenshots'} already holds {len(clash)} of the images to write "
            f"(e.g. {sorted(clash)[0]}); use an empty folder, or --start {args.start + len(existing)} "
            "to add images after the existing ones.",
            file=sys.stderr,
        )
        return 2
    try:
        counts = generate(args.out, args.n, width, height, args.seed, max(1, args.workers), args.start)
    except GeneratorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    labels = parse_labels(BEDROOM)
    print(f"wrote {args.n} images to {args.out}")
    print(frequency_report(counts, labels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
