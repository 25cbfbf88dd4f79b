"""ONNX export of a trained U-Net: uint8 RGB in, class mask and confidence out, nothing from fastai needed."""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from torch import nn

from helpers.files import atomic_save
from helpers.labels import LabelTable
from helpers.paths import int8_is_stale

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # imagenet_stats, as in training


class SegmentationOnnx(nn.Module):
    """Wraps the U-Net: normalises uint8 N x H x W x 3 RGB inside the graph, returns mask and confidence."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1) * 255)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
        logits = self.model(x)
        confidence, mask = torch.softmax(logits, dim=1).max(dim=1)
        return mask.to(torch.uint8), confidence


def metadata(labels: LabelTable, res: int, **extra: str) -> dict[str, str]:
    """The ONNX metadata a consumer needs: class names, colours, resolution and input layout."""
    return {"classes": json.dumps(labels.codes), "colors": json.dumps(labels.palette.tolist()),
            "resolution": str(res), "input": "image: uint8 N x H x W x 3 RGB, H = W = resolution",
            "outputs": "mask: uint8 class index N x H x W; confidence: float32 max softmax N x H x W", **extra}


def export_onnx(model: nn.Module, path: str | Path, res: int, labels: LabelTable, **extra: str) -> Path:
    """Write the model as ONNX (fp32, dynamic batch) with its metadata, atomically."""
    wrapper = SegmentationOnnx(copy.deepcopy(model).float().cpu().to(memory_format=torch.contiguous_format)).eval()
    dummy = torch.zeros(1, res, res, 3, dtype=torch.uint8)

    def save(tmp: Path) -> None:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer notes about fastai's shape checks, which are constant here
            torch.onnx.export(wrapper, (dummy,), str(tmp), input_names=["image"], output_names=["mask", "confidence"],
                              dynamic_axes={"image": {0: "N"}, "mask": {0: "N"}, "confidence": {0: "N"}},
                              opset_version=17, dynamo=False)
        proto = onnx.load(str(tmp))
        for key, value in metadata(labels, res, **extra).items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, str(tmp))

    return atomic_save(path, save)


def torch_masks(model: nn.Module, images: np.ndarray) -> np.ndarray:
    """PyTorch argmax masks for uint8 N x H x W x 3 images, normalised as in training."""
    model = copy.deepcopy(model).float().cpu().eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return model(x).argmax(1).numpy().astype(np.uint8)


def parity(model: nn.Module, onnx_path: str | Path, images: np.ndarray) -> float:
    """Share of pixels where the ONNX mask equals the PyTorch argmax on the same images."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    onnx_mask = session.run(["mask"], {"image": images})[0]
    return float((onnx_mask == torch_masks(model, images)).mean())


class ExportError(Exception):
    """An exported model does not predict what the trained model predicts."""


def check_parity(model: nn.Module, onnx_path: str | Path, images: np.ndarray, at_least: float = 0.999) -> float:
    """`parity`, raising ExportError when fewer than `at_least` of the pixels agree."""
    agree = parity(model, onnx_path, images)
    if agree < at_least:
        raise ExportError(f"{onnx_path} agrees with PyTorch on only {agree:.2%} of pixels (at least {at_least:.1%} "
                          "expected): the export is broken. Re-run the export cell; if it persists, report it.")
    return agree


class _Batches(CalibrationDataReader):
    """Calibration images fed to the quantizer one at a time."""

    def __init__(self, images: np.ndarray):
        self.batches = iter(images[i:i + 1] for i in range(len(images)))

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"image": batch}


def quantize_int8(onnx_path: str | Path, out_path: str | Path, calibration: np.ndarray) -> Path:
    """An int8 copy of an exported model: static QDQ quantization, per-channel weights, calibrated on `calibration`.

    Calibrate on training screenshots (`paths.training_files`), so the held-out ones stay unseen for scoring."""
    def save(tmp: Path) -> None:
        prepared = tmp.with_name(tmp.name + ".pre.onnx")
        try:
            quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=True)
            # a BatchNormalization scale is 1-D: its channels are axis 0, not the default 1 of convolutions
            quantize_static(str(prepared), str(tmp), _Batches(calibration), quant_format=QuantFormat.QDQ,
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=_head_nodes(prepared),
                            extra_options={"QDQOpTypePerChannelSupportToAxis": {"BatchNormalization": 0}})
            proto = onnx.load(str(tmp))
            meta = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
            meta["precision"] = "int8 (static QDQ, per-channel weights)"
            del proto.metadata_props[:]
            for key, value in meta.items():
                proto.metadata_props.add(key=key, value=value)
            onnx.save(proto, str(tmp))
        finally:
            prepared.unlink(missing_ok=True)

    return atomic_save(out_path, save)


def ensure_int8(onnx_path: str | Path, int8_path: str | Path, calibration: np.ndarray) -> bool:
    """Quantize `onnx_path` into `int8_path` unless an up-to-date copy exists; return whether it quantized."""
    if not int8_is_stale(onnx_path, int8_path):
        return False
    quantize_int8(onnx_path, int8_path, calibration)
    return True


def _head_nodes(path: Path) -> list[str]:
    """Nodes kept in float: the input normalisation and the softmax/argmax after the last convolution."""
    graph = onnx.load(str(path)).graph
    convs = [i for i, n in enumerate(graph.node) if n.op_type == "Conv"]
    return [n.name for i, n in enumerate(graph.node) if i < convs[0] or i > convs[-1]]
