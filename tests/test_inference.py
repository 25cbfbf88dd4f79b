"""The ONNX predictor on a tiny exported model, its post-processing, and every bad input."""
import io
import logging
import os

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from helpers.export import ExportError, check_parity, ensure_int8, export_onnx, parity
from helpers.inference import Predictor, PredictorError, centroids, colorize, dice_multi, isolate, overlay, resize_mask
from helpers.labels import BEDROOM, parse_labels

LABELS = parse_labels(BEDROOM)


class TinySegmenter(torch.nn.Module):
    """Stands in for the U-Net: a few convolutions with one output per class."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        # a BatchNorm after the ReLU, as in fastai's U-Net: one that quantization cannot fold into a convolution
        self.net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(8),
                                       torch.nn.Conv2d(8, LABELS.n_classes, 1))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny_16x.onnx"
    export_onnx(TinySegmenter().eval(), path, 16, LABELS, screenshot_aspect="1.5000")
    return path


def random_image(h=30, w=45, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, channels), dtype=np.uint8)


def test_export_metadata_and_parity(model_path):
    meta = {p.key: p.value for p in onnx.load(str(model_path)).metadata_props}
    assert meta["resolution"] == "16" and meta["screenshot_aspect"] == "1.5000"
    images = np.stack([random_image(16, 16, seed=i) for i in range(8)])
    assert parity(TinySegmenter().eval(), model_path, images) >= 0.999
    other = TinySegmenter().eval()
    torch.nn.init.normal_(other.net[-1].weight)  # a different model: the export no longer matches it
    with pytest.raises(ExportError, match="the export is broken"):
        check_parity(other, model_path, images)


def test_predictor_shapes_dtypes_and_resize_back(model_path):
    p = Predictor(model_path)
    assert p.resolution == 16 and p.codes == LABELS.codes and (p.palette == LABELS.palette).all()
    assert p.labels.groups == LABELS.groups
    mask, conf = p.predict(random_image())
    assert mask.shape == conf.shape == (30, 45) and mask.dtype == np.uint8 and conf.dtype == np.float32
    assert mask.max() < LABELS.n_classes and ((conf > 0) & (conf <= 1)).all()
    small, _ = p.predict(random_image(), full_size=False)
    assert small.shape == (16, 16)
    assert (resize_mask(small, (45, 30)) == mask).all()


def test_predictor_accepts_pil_arrays_bytes_grey_and_alpha(model_path):
    p = Predictor(model_path)
    rgb = random_image()
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    expected, _ = p.predict(rgb)
    assert (p.predict(buf.getvalue())[0] == expected).all()
    assert (p.predict(Image.fromarray(rgb))[0] == expected).all()
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])
    assert (p.predict(rgba)[0] == expected).all()
    assert (p.predict(Image.fromarray(rgba))[0] == expected).all()
    assert p.predict(rgb[..., 0])[0].shape == (30, 45)
    assert p.predict(Image.fromarray(rgb[..., 0]))[0].shape == (30, 45)
    png = p.predict_png(buf.getvalue())
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), colorize(expected, p.palette))


@pytest.mark.parametrize("bad, message", [
    (b"definitely not an image", "could not be decoded"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((4, 4, 5), np.uint8), "expected an H x W x 3"),
    ("a path string", "cannot predict on a str"),
])
def test_bad_images_are_clear(model_path, bad, message):
    with pytest.raises(PredictorError, match=message):
        Predictor(model_path).predict(bad)


def test_bad_models_are_clear(tmp_path, model_path):
    with pytest.raises(PredictorError, match="not found"):
        Predictor(tmp_path / "missing.onnx")
    (tmp_path / "fake.onnx").write_bytes(b"\x00 not onnx at all")
    with pytest.raises(PredictorError, match="not a loadable ONNX model"):
        Predictor(tmp_path / "fake.onnx")
    proto = onnx.load(str(model_path))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / "bare.onnx"))
    with pytest.raises(PredictorError, match="no classes, colors, resolution in its metadata"):
        Predictor(tmp_path / "bare.onnx")


def test_colorize_equals_a_per_class_loop():
    mask = np.random.default_rng(1).integers(0, LABELS.n_classes, (40, 50)).astype(np.uint8)
    slow = np.zeros((40, 50, 3), np.uint8)
    for value, colour in enumerate(LABELS.palette):
        slow[mask == value] = colour
    assert np.array_equal(colorize(mask, LABELS.palette), slow)


def test_overlay_isolate_and_centroids():
    mask = np.zeros((10, 20), np.uint8)
    mask[2:4, 10:14] = 5
    mask[6:10, 0:4] = 2
    image = np.full((10, 20, 3), 100, np.uint8)
    out = overlay(image, mask, LABELS.palette, 1.0, keep=isolate(mask, LABELS.groups["furniture"]))
    assert (out[2, 10] == LABELS.palette[5]).all() and (out[7, 1] == 100).all() and (out[0, 0] == 100).all()
    with pytest.raises(ValueError, match="opacity"):
        overlay(image, mask, LABELS.palette, 1.5)
    assert centroids(mask) == [{"label": 2, "labelPositionX": 1, "labelPositionY": 7},
                               {"label": 5, "labelPositionX": 11, "labelPositionY": 2}]


def test_dice_multi():
    t = np.array([[0, 1], [1, 2]])
    assert dice_multi([t], [t], 3) == 1.0
    assert dice_multi([np.array([[0, 1], [1, 1]])], [t], 3) == pytest.approx((1 + 0.8 + 0) / 3)


def test_int8_model_is_made_and_loads(model_path, tmp_path, caplog):
    out = tmp_path / "tiny_16x_int8.onnx"
    with caplog.at_level(logging.WARNING):
        assert ensure_int8(model_path, out, np.stack([random_image(16, 16, seed=i) for i in range(4)]))
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]  # BatchNorm scales quantized per channel
    assert not ensure_int8(model_path, out, np.zeros((1, 16, 16, 3), np.uint8))  # up to date: kept
    later = out.stat().st_mtime + 10
    os.utime(model_path, (later, later))  # the fp32 model was retrained after its int8 copy was made
    assert ensure_int8(model_path, out, np.stack([random_image(16, 16, seed=i) for i in range(4)]))
    p = Predictor(out)
    assert p.metadata["precision"].startswith("int8") and p.resolution == 16
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(str(out)).graph.node)
    assert p.predict(random_image())[0].shape == (30, 45)
