"""Data, learner, precision and saving for the training notebooks, on top of fastai."""
from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai import metrics
from fastai.callback.core import Callback
from fastai.callback.progress import CSVLogger
from fastai.data.block import DataBlock
from fastai.data.transforms import FuncSplitter, Normalize
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat, DiceLoss
from fastai.metrics import foreground_acc
from fastai.torch_core import flatten_check
from fastai.vision.all import (
    Hue,
    ImageBlock,
    MaskBlock,
    RandomResizedCrop,
    RandTransform,
    Resize,
    ResizeMethod,
    Saturation,
    TensorImage,
    aug_transforms,
    imagenet_stats,
    resnet34,
    unet_learner,
)
from PIL import Image

from helpers.export import check_parity, export_onnx
from helpers.files import UNDECODABLE, atomic_save
from helpers.inference import resize_mask, squish
from helpers.labels import LabelTable
from helpers.paths import in_validation, label_of, screenshots, split_problem, stage_paths


class RandomConv(RandTransform):
    """Filters each training image of a batch with its own random convolution weights (one kernel size per batch;
    Xu et al., ICLR 2021, "random convolutions"), blended with the original by a random share: textures and colours
    change, shapes stay."""

    split_idx, order = 0, 45  # training only; after fastai's lighting transforms, before Normalize

    def __init__(self, p: float = 0.5, kernel_sizes: tuple[int, ...] = (1, 3, 5, 7)):
        super().__init__(p=p)
        self.kernel_sizes = kernel_sizes

    def encodes(self, x: TensorImage) -> TensorImage:
        b, c, h, w = x.shape
        k = int(np.random.choice(self.kernel_sizes))
        weight = torch.randn(b * c, c, k, k, device=x.device, dtype=x.dtype) / np.sqrt(c * k * k)
        out = torch.nn.functional.conv2d(x.reshape(1, b * c, h, w), weight, padding=k // 2, groups=b)
        out = out.reshape(b, c, h, w)
        # back to the image's own brightness and contrast per channel, so the blend stays a plausible photo
        mean, std = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
        out = (out - out.mean((2, 3), keepdim=True)) / (out.std((2, 3), keepdim=True) + 1e-6) * std + mean
        alpha = torch.rand(b, 1, 1, 1, device=x.device, dtype=x.dtype)
        return TensorImage((alpha * x + (1 - alpha) * out).clamp(0, 1))


def batch_augmentations(random_conv: float = 0.0) -> list:
    """Augmentations applied per batch: flips, small rotations, zoom, warp, lighting, saturation and hue, never upside
    down; colour shifts so the model leans on shape and context rather than on the generator's palette; with
    `random_conv` > 0, that share of the batches also through RandomConv."""
    return [*aug_transforms(do_flip=True, flip_vert=False, max_rotate=5.0, max_zoom=1.1, max_lighting=0.2,
                            max_warp=0.1, p_lighting=0.75),
            Saturation(max_lighting=0.35, p=0.75), Hue(max_hue=0.06, p=0.5),
            *([RandomConv(p=random_conv)] if random_conv > 0 else [])]


def item_transform(image_size: int, augment: bool = True):
    """Each image to a square: in training a random crop of photo shape (1:1 to 16:9, at least a third of the
    screenshot) squished, as photos of any aspect are squished at inference; in validation the whole screenshot."""
    if not augment:
        return Resize(image_size, method=ResizeMethod.Squish)
    return RandomResizedCrop(image_size, min_scale=0.35, ratio=(1.0, 16 / 9), val_xtra=0.0)


def segmentation_dls(data_path: str | Path, image_size: int, batchsize: int, labels: LabelTable,
                     seed: int = 0, augment: bool = True, num_workers: int | None = None, random_conv: float = 0.0):
    """fastai DataLoaders of screenshots and index masks, squished to image_size x image_size.

    The split is `paths.in_validation` (file names only); `seed` only shuffles the training batches; `random_conv`
    is the share of training batches filtered by RandomConv."""
    files = screenshots(data_path)
    problem = split_problem(files)
    if problem:
        raise StageError(f"{data_path}: {problem}")
    n_train = len(files) - sum(map(in_validation, files))
    if batchsize > n_train:
        raise StageError(f"batch size {batchsize} is larger than the {n_train} training screenshots of {data_path}: "
                         "fastai drops an incomplete batch, so nothing would be trained. Lower batchsize to at most "
                         f"{n_train}, or add screenshots.")
    block = DataBlock(
        blocks=(ImageBlock, MaskBlock(codes=labels.codes)),
        get_items=screenshots,
        get_y=label_of,
        splitter=FuncSplitter(in_validation),
        item_tfms=item_transform(image_size, augment),
        batch_tfms=[*(batch_augmentations(random_conv) if augment else []), Normalize.from_stats(*imagenet_stats)],
    )
    if num_workers is None:
        num_workers = min(4, os.cpu_count() or 1)
    return block.dataloaders(Path(data_path), bs=batchsize, num_workers=num_workers, seed=seed)


class CPUBf16(Callback):
    """bf16 autocast and channels-last on the CPU (fastai's own mixed precision only autocasts CUDA)."""

    order = 10

    def before_fit(self):
        self.learn.model.to(memory_format=torch.channels_last)

    def before_batch(self):
        self.learn.xb = tuple(x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x for x in self.xb)
        self.autocast = torch.autocast("cpu", dtype=torch.bfloat16)
        self.autocast.__enter__()

    def after_pred(self):
        self.learn.pred = self.pred.float()

    def after_loss(self):
        self.autocast.__exit__(None, None, None)

    def after_cancel_batch(self):
        self.autocast.__exit__(None, None, None)

    def after_fit(self):
        self.learn.model.to(memory_format=torch.contiguous_format)


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matrix work natively (AVX-512 bf16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def trains_on_cuda(learn: Learner) -> bool:
    """Whether fit will run on a GPU: fastai moves the model to the DataLoaders' device only when fitting starts, so
    the model's own parameters still sit on the CPU when the precision is chosen."""
    device = getattr(learn.dls, "device", None)
    return device is not None and torch.device(device).type == "cuda"


def set_precision(learn: Learner, precision: str = "auto") -> str:
    """Pick fp16 on CUDA, bf16 autocast on a bf16 CPU, else fp32; return what was chosen, in words."""
    cuda = trains_on_cuda(learn)
    if precision == "auto":
        precision = "fp16" if cuda else ("bf16" if cpu_has_bf16() else "fp32")
    if precision == "fp16":
        if not cuda:
            raise ValueError("fp16 mixed precision needs a CUDA GPU; use precision='bf16' or 'fp32' on a CPU.")
        learn.to_fp16()
        return f"fp16 mixed precision on {torch.cuda.get_device_name()}"
    if precision == "bf16" and not cuda:
        learn.add_cb(CPUBf16())
        return f"bf16 autocast + channels-last on the CPU ({torch.get_num_threads()} threads)"
    if precision == "bf16":
        learn.to_bf16()
        return f"bf16 mixed precision on {torch.cuda.get_device_name()}"
    return "fp32 on " + (torch.cuda.get_device_name() if cuda else f"the CPU ({torch.get_num_threads()} threads)")


class CrossEntropyDiceLoss:
    """Cross-entropy plus fastai's soft Dice loss, which weighs every class alike so small items are not ignored."""

    def __init__(self, axis: int = 1, reduction: str = "mean"):
        self.axis, self.reduction = axis, reduction
        self.ce = CrossEntropyLossFlat(axis=axis)
        self.dice = DiceLoss(axis=axis, smooth=1.0, reduction="mean")

    def __call__(self, pred: torch.Tensor, targ: torch.Tensor) -> torch.Tensor:
        if self.reduction != "none":
            return self.ce(pred, targ) + self.dice(pred, targ)
        # one loss per image, which fastai's top-losses interpretation asks for
        self.ce.reduction, self.dice.reduction = "none", "none"
        try:
            return self.ce(pred, targ).view(len(pred), -1).mean(1) + self.dice(pred, targ).mean(1)
        finally:
            self.ce.reduction, self.dice.reduction = "mean", "mean"

    def decodes(self, x: torch.Tensor) -> torch.Tensor:
        """Class index per pixel."""
        return x.argmax(dim=self.axis)

    def activation(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities per pixel."""
        return torch.softmax(x, dim=self.axis)


LOSSES = {"ce": "cross-entropy", "ce+dice": "cross-entropy + soft Dice"}


def make_loss(loss: str = "ce+dice"):
    """The training loss by name: "ce" (fastai's default for segmentation) or "ce+dice"."""
    if loss not in LOSSES:
        raise ValueError(f"loss = {loss!r} is not known: use one of {', '.join(map(repr, LOSSES))}.")
    return CrossEntropyDiceLoss() if loss == "ce+dice" else CrossEntropyLossFlat(axis=1)


class DiceMulti(metrics.DiceMulti):
    """fastai's DiceMulti, counted over every rank's predictions when training is distributed.

    fastai's own counts only its rank's share of the validation set; this one gathers predictions and targets
    through `learn.to_detach`, as fastai's AccumMetric does, which also drops the samples DDP repeats as padding."""

    def accumulate(self, learn):
        n = learn.pred.shape[self.axis]
        pred, targ = flatten_check(*learn.to_detach((learn.pred.argmax(dim=self.axis), learn.y)))
        inter = torch.bincount(targ[pred == targ], minlength=n).tolist()
        union = (torch.bincount(pred, minlength=n) + torch.bincount(targ, minlength=n)).tolist()
        for c in range(n):
            self.inter[c] = self.inter.get(c, 0.0) + inter[c]
            self.union[c] = self.union.get(c, 0.0) + union[c]


class JaccardCoeffMulti(DiceMulti, metrics.JaccardCoeffMulti):
    """fastai's JaccardCoeffMulti (mean IoU), counted over every rank like `DiceMulti`."""


def make_learner(dls, labels: LabelTable, arch=resnet34, use_transfer: bool = False, loss: str = "ce+dice") -> Learner:
    """A U-Net with one output per class (void included), the given loss and the segmentation metrics."""
    return unet_learner(dls, arch, pretrained=use_transfer, n_out=labels.n_classes, loss_func=make_loss(loss),
                        metrics=[foreground_acc, DiceMulti(), JaccardCoeffMulti()])


def scaled_batchsize(small_batchsize: int, res: int) -> int:
    """GoBig's batch size when none is given: the 64x64 batch size scaled down with resolution."""
    return max(1, small_batchsize * 64 // res)


def history_logger(models_dir: str | Path, save_name: str, res: int) -> CSVLogger:
    """A CSVLogger writing this stage's history beside a temporary name, to be kept by `keep_history`."""
    path = stage_paths(models_dir, save_name, res)["history"]
    path.parent.mkdir(parents=True, exist_ok=True)
    return CSVLogger(fname=str(path.with_name(path.name + ".part")))


def keep_history(models_dir: str | Path, save_name: str, res: int) -> pd.DataFrame:
    """Move a finished run's history CSV to its final name and return it."""
    path = stage_paths(models_dir, save_name, res)["history"]
    os.replace(path.with_name(path.name + ".part"), path)
    return pd.read_csv(path)


def save_weights(learn: Learner, labels: LabelTable, path: Path) -> Path:
    """The model's weights and the class names they predict: what the next stage loads and checks."""
    return atomic_save(path, lambda tmp: torch.save({"classes": labels.codes, "model": learn.model.state_dict()}, tmp))


def export_learner(learn: Learner, path: Path) -> Path:
    """fastai's `learn.export` (a pickle: load only from a trusted source)."""
    return atomic_save(path, lambda tmp: learn.export(tmp))


def read_weights(path: Path) -> tuple[list[str] | None, dict]:
    """The class names (None in files saved before names were stored) and the state dict of a `.pth`."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if "model" in saved and "classes" in saved:
        return list(saved["classes"]), saved["model"]
    return None, saved


def load_weights(learn: Learner, path: Path) -> None:
    """Load a previous stage's weights (checked first by `check_stage_inputs`)."""
    try:
        learn.model.load_state_dict(read_weights(path)[1])
    except RuntimeError:  # torch lists every missing and unexpected key: hundreds of lines
        raise StageError(f"the weights in {path.name} do not fit this model (a U-Net on the encoder of `model_arch`): "
                         "the stage was trained with another model_arch. Set model_arch to the one that stage used.") \
            from None


class StageError(Exception):
    """A training stage cannot start; the message says why and what to run first."""


def smallest_screenshot(data_path: str | Path) -> tuple[str, tuple[int, int]] | None:
    """The name and size of the screenshot with the shortest side (headers only), or None without screenshots."""
    sizes = []
    for f in screenshots(data_path):
        try:
            with Image.open(f) as img:
                sizes.append((min(img.size), f.name, img.size))
        except UNDECODABLE:
            continue  # the dataset check names unreadable files
    return min(sizes)[1:] if sizes else None


def check_stage_inputs(data_path: str | Path, labels: LabelTable, save_name: str, input_res: int,
                       output_res: int) -> Path:
    """Before any GoBig training: the input stage's weights exist, fit labels.csv, and the screenshots are big
    enough."""
    weights = stage_paths(Path(data_path) / "models", save_name, input_res)["pth"]
    if not weights.is_file():
        maker = "SegmentationLearner.ipynb" if input_res == 64 else f"GoBig.ipynb with output_res={input_res}"
        raise StageError(f"{weights} not found: the {input_res}x{input_res} stage has not been trained. "
                         f"Run {maker} first (or `make demo FROM=...`), or set input_res/save_name to a stage you "
                         "have.")
    if output_res <= input_res:
        raise StageError(f"output_res ({output_res}) must be larger than input_res ({input_res}): each run goes one "
                         "step up.")
    smallest = smallest_screenshot(data_path)
    if smallest is not None and output_res > min(smallest[1]):
        (w, h), fits = smallest[1], [r for r in (64, 128, 256, 512, 1024) if r <= min(smallest[1])]
        stop = f"Stop at {fits[-1]}" if fits else "Use screenshots of at least 64 pixels a side"
        raise StageError(f"output_res {output_res} is larger than the smallest screenshot ({smallest[0]}, {w}x{h}): "
                         f"the model would train on upscaled pixels. {stop}, or generate larger screenshots "
                         "(python -m helpers.synth --size).")
    classes, state = read_weights(weights)
    fix = "Restore the labels.csv that stage was trained with, or retrain from 64x64 with SegmentationLearner.ipynb."
    if classes is not None and classes != labels.codes:
        changed = [f"value {v}: {a!r} in the model, {b!r} in labels.csv"
                   for v, (a, b) in enumerate(zip(classes, labels.codes)) if a != b]
        if len(classes) != len(labels.codes):
            changed.append(f"{len(classes)} classes in the model, {len(labels.codes)} in labels.csv (void included)")
        raise StageError(f"{weights.name} was trained with other classes than labels.csv gives: "
                         f"{'; '.join(changed[:5])}{' ...' if len(changed) > 5 else ''}. {fix}")
    n_out = [v.shape[0] for v in state.values() if v.ndim == 4][-1]
    if n_out != labels.n_classes:
        raise StageError(f"{weights.name} predicts {n_out} classes but labels.csv gives {labels.n_classes} "
                         f"(void included): the classes changed since that stage was trained. {fix}")
    return weights


def fit_halving_on_oom(build, batchsize: int, fit) -> tuple[Learner, int]:
    """Build a learner for a batch size and fit it; on CUDA out-of-memory halve the batch size and retry, down to 1."""
    while True:
        learn = build(batchsize)
        try:
            fit(learn)
            return learn, batchsize
        except torch.cuda.OutOfMemoryError:
            if batchsize <= 1:
                raise
            del learn
            gc.collect()
            torch.cuda.empty_cache()
            print(f"CUDA out of memory at batch size {batchsize}; retrying the step with batch size {batchsize // 2}")
            batchsize //= 2


def validation_images(dls, res: int, n: int = 8) -> np.ndarray:
    """The first n validation screenshots as uint8 N x res x res x 3, squished as in training."""
    return np.stack([squish(Image.open(f), res) for f in list(dls.valid_ds.items)[:n]])


def save_stage(learn: Learner, labels: LabelTable, data_path: str | Path, save_name: str, res: int) -> dict[str, Path]:
    """Save a stage three ways, weights (.pth), fastai export (.pkl) and ONNX (.onnx); return what was written."""
    paths = stage_paths(Path(data_path) / "models", save_name, res)
    w, h = Image.open(learn.dls.valid_ds.items[0]).size  # squished to a square in training: photos should match
    return {"pth": save_weights(learn, labels, paths["pth"]),
            "pkl": export_learner(learn, paths["pkl"]),
            "onnx": export_onnx(learn.model, paths["onnx"], res, labels, trained_by=f"{save_name} at {res}x{res}",
                                screenshot_aspect=f"{w / h:.4f}")}


def check_stage_onnx(learn: Learner, onnx_path: Path, res: int, n: int = 8) -> str:
    """Compare the ONNX export with PyTorch on validation images: raise when they disagree, else say how well."""
    images = validation_images(learn.dls, res, n)
    return f"ONNX mask equals the PyTorch argmax on {check_parity(learn.model, onnx_path, images):.4%} of pixels " \
           f"({len(images)} validation images)"


def describe_files(files: dict[str, Path]) -> str:
    """One line per saved file: its kind, path and size."""
    return "\n".join(f"{kind:8} {path}  ({path.stat().st_size / 1e6:.1f} MB)" for kind, path in files.items())


def predict_full_size(learn: Learner, image: Path) -> np.ndarray:
    """fastai's prediction for one screenshot, resized back to the screenshot's size with nearest neighbour."""
    with warnings.catch_warnings():
        # fastai averages its Dice/IoU metrics over the target-less test batch of `predict`: an empty mean, no error
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        pred, _, _ = learn.predict(image)
    return resize_mask(pred.numpy().astype(np.uint8), Image.open(image).size)
