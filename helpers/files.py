"""Atomic file writes: an interrupted save never leaves a truncated file, or a half-written dataset, under the final
name; and the errors of a file that does not decode as an image."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from PIL import Image, UnidentifiedImageError

# What PIL raises for a file that is not a decodable image (truncated, not an image, a folder, too many pixels)
UNDECODABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write bytes to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_save(path: str | Path, save: Callable[[Path], object]) -> Path:
    """Call `save(tmp_path)` and move the result to `path` atomically."""
    with atomic_path(path) as tmp:
        save(tmp)
    return Path(path)


@contextmanager
def staged_parts(out: str | Path, parts: tuple[str, ...]) -> Iterator[Path]:
    """Yield a hidden folder inside `out` to write `parts` (files or folders) into; when the block finishes they
    replace those of `out`, everything else in `out` stays. On any failure `out` is left as it was."""
    out = Path(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(dir=out, prefix=".new.", suffix=".part"))  # inside out: renames stay on one disk
    try:
        yield new
        replace_parts(new, out, parts)
    finally:
        shutil.rmtree(new, ignore_errors=True)
        if made and not any(out.iterdir()):  # a failed first write leaves no empty folder behind
            out.rmdir()


def replace_parts(new: Path, out: Path, parts: tuple[str, ...]) -> None:
    """Move `parts` from `new` into `out`, replacing those there; if a move fails, put the old ones back."""
    old = Path(tempfile.mkdtemp(dir=out, prefix=".old.", suffix=".part"))
    moved_old: list[str] = []
    moved_new: list[str] = []
    try:
        for part in parts:
            if (out / part).exists():
                os.replace(out / part, old / part)
                moved_old.append(part)
        for part in parts:
            os.replace(new / part, out / part)
            moved_new.append(part)
    except BaseException:
        for part in moved_new:
            os.replace(out / part, new / part)
        for part in moved_old:
            os.replace(old / part, out / part)
        old.rmdir()  # empty again; if putting back failed, the old parts stay in it rather than being deleted
        raise
    shutil.rmtree(old, ignore_errors=True)
