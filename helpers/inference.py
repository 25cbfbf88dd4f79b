"""Inference on exported ONNX models: the Predictor, its pre- and post-processing (squish, colouring, overlays,
label groups, class centroids, all vectorised), a timing breakdown and the Dice of predicted masks."""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from helpers.labels import LabelTable


def colorize(mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """RGB image of a class mask: one palette lookup, no per-class loop."""
    return palette[mask]


def overlay(image: np.ndarray, mask: np.ndarray, palette: np.ndarray, opacity: float = 0.5,
            keep: np.ndarray | None = None) -> np.ndarray:
    """The coloured mask blended over an RGB image; pixels outside `keep` (and void) show the image only."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1; got {opacity}")
    show = mask > 0 if keep is None else keep & (mask > 0)
    alpha = (show * opacity).astype(np.float32)[..., None]
    out = image[..., :3] * (1 - alpha) + colorize(mask, palette) * alpha
    return (out + 0.5).astype(np.uint8)


def isolate(mask: np.ndarray, values: list[int]) -> np.ndarray:
    """Boolean image of the pixels whose class is among `values` (e.g. one label group)."""
    lookup = np.zeros(256, dtype=bool)
    lookup[values] = True
    return lookup[mask]


def centroids(mask: np.ndarray, min_pixels: int = 1) -> list[dict[str, int]]:
    """Each present class's pixel centroid, as the original server's {label, labelPositionX, labelPositionY}."""
    flat = mask.ravel().astype(np.int64)
    counts = np.bincount(flat, minlength=256)
    ys, xs = np.indices(mask.shape)
    sum_x = np.bincount(flat, weights=xs.ravel(), minlength=256)
    sum_y = np.bincount(flat, weights=ys.ravel(), minlength=256)
    present = np.flatnonzero(counts >= min_pixels)
    return [{"label": int(v), "labelPositionX": int(sum_x[v] / counts[v]), "labelPositionY": int(sum_y[v] / counts[v])}
            for v in present if v != 0]


def squish(image: Image.Image | np.ndarray, res: int) -> np.ndarray:
    """An image squished (aspect ignored, as in training) to res x res RGB uint8, bilinear."""
    image = image if isinstance(image, Image.Image) else Image.fromarray(image)
    return np.asarray(image.convert("RGB").resize((res, res), Image.Resampling.BILINEAR))


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A class mask resized to (width, height) with nearest neighbour, so no class is invented."""
    return np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))


class PredictorError(ValueError):
    """A model or an image the predictor cannot use; the message says what is wrong and what to do."""


def to_rgb_array(image) -> np.ndarray:
    """A PIL image, numpy array or PNG/JPEG bytes as uint8 H x W x 3 RGB (alpha dropped, greyscale expanded)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        try:
            image = Image.open(io.BytesIO(image))
            image.load()
        except Exception as e:  # PIL raises several types for bad bytes
            raise PredictorError(f"the image bytes could not be decoded ({e.__class__.__name__}: {e}); "
                                 "send a PNG or JPEG.") from None
    if isinstance(image, Image.Image):
        if image.width == 0 or image.height == 0:
            raise PredictorError("the image is empty (0 pixels wide or high).")
        return np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.size == 0:
            raise PredictorError(f"the image is empty (shape {image.shape}).")
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
            raise PredictorError(f"expected an H x W x 3 RGB array; got shape {image.shape}.")
        if image.shape[2] == 1:
            image = np.repeat(image, 3, axis=2)
        if image.dtype != np.uint8:
            if np.issubdtype(image.dtype, np.floating) and image.max() <= 1.0:
                image = image * 255
            image = np.clip(image, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(image[..., :3])
    raise PredictorError(f"cannot predict on a {type(image).__name__}; pass a PIL image, a numpy array or PNG bytes.")


class Predictor:
    """An exported `.onnx` segmentation model, ready to predict on images of any size. Never unpickles anything."""

    def __init__(self, model_path, threads: int | None = None, providers: list[str] | None = None):
        path = Path(model_path)
        if not path.is_file():
            raise PredictorError(f"{path} not found: train and export a model first "
                                 "(SegmentationLearner.ipynb or GoBig.ipynb).")
        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own untyped errors for non-ONNX files
            raise PredictorError(f"{path} is not a loadable ONNX model ({str(e).splitlines()[0][:200]}). "
                                 "Export one with helpers.export.export_onnx.") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        missing = [k for k in ("classes", "colors", "resolution") if k not in meta]
        if missing:
            raise PredictorError(f"{path} has no {', '.join(missing)} in its metadata: it was not exported by "
                                 "helpers.export.export_onnx. Re-export it from the trained model.")
        self.path = path
        self.metadata = dict(meta)
        self.codes: list[str] = json.loads(meta["classes"])
        self.palette = np.array(json.loads(meta["colors"]), dtype=np.uint8)
        self.resolution = int(meta["resolution"])
        self.labels = LabelTable(tuple(self.codes[1:]), tuple(tuple(c) for c in self.palette[1:].tolist()))
        self.provider = self.session.get_providers()[0]
        self.session.run(None, {"image": np.zeros((1, self.resolution, self.resolution, 3), np.uint8)})  # warm-up

    def prepare(self, image) -> tuple[np.ndarray, tuple[int, int]]:
        """The image as a 1 x res x res x 3 batch, and its original (width, height)."""
        rgb = to_rgb_array(image)
        return squish(rgb, self.resolution)[None], (rgb.shape[1], rgb.shape[0])

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model alone on a prepared batch: masks and confidences at model size."""
        mask, confidence = self.session.run(["mask", "confidence"], {"image": batch})
        return mask, confidence

    def predict(self, image, full_size: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """Class mask (uint8) and confidence (float32) for one image, at its own size or at model size."""
        batch, size = self.prepare(image)
        mask, confidence = self.run(batch)
        mask, confidence = mask[0], confidence[0]
        if full_size and size != (self.resolution, self.resolution):
            mask = resize_mask(mask, size)
            confidence = np.asarray(Image.fromarray(confidence).resize(size, Image.Resampling.BILINEAR))
        return mask, confidence

    def predict_png(self, png: bytes, opacity: float | None = None) -> bytes:
        """PNG bytes in, coloured prediction (or an overlay at `opacity`) as PNG bytes out, at the input's size."""
        rgb = to_rgb_array(png)
        mask, _ = self.predict(rgb)
        out = colorize(mask, self.palette) if opacity is None else overlay(rgb, mask, self.palette, opacity)
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()


def time_breakdown(predictor: Predictor, pngs: list[bytes], n_runs: int = 50) -> dict[str, float]:
    """Median milliseconds of each part of inference over `n_runs` predictions cycling through `pngs`."""
    parts: dict[str, list[float]] = {k: [] for k in ("decode+resize", "inference", "colouring", "centroids", "total")}
    for i in range(n_runs):
        t0 = time.perf_counter()
        batch, size = predictor.prepare(pngs[i % len(pngs)])
        t1 = time.perf_counter()
        mask, _ = predictor.run(batch)
        t2 = time.perf_counter()
        full = resize_mask(mask[0], size)
        colorize(full, predictor.palette)
        t3 = time.perf_counter()
        centroids(full)
        t4 = time.perf_counter()
        for key, seconds in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
            parts[key].append(seconds * 1000)
    out = {k: float(np.median(v)) for k, v in parts.items()}
    out["fps"] = 1000 / out["total"]
    return out


def dice_multi(preds: list[np.ndarray], targets: list[np.ndarray], n_classes: int) -> float:
    """Dice averaged over classes, intersections and sums pooled over all images (as fastai's DiceMulti)."""
    inter = np.zeros(n_classes)
    total = np.zeros(n_classes)
    for p, t in zip(preds, targets):
        inter += np.bincount(t[p == t].ravel(), minlength=n_classes)[:n_classes]
        total += np.bincount(p.ravel(), minlength=n_classes)[:n_classes]
        total += np.bincount(t.ravel(), minlength=n_classes)[:n_classes]
    present = total > 0
    return float((2 * inter[present] / total[present]).mean())
