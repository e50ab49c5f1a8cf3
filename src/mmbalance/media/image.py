"""Still-image decoding (Pillow, as the papers' image loaders), for datasets whose visual modality
is one picture per sample."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from mmbalance.media.errors import MediaError
from mmbalance.media.flow import resize_field

__all__ = ["TRUNCATED", "read_image"]

# What to do with an image whose data ends early: "skip" raises MediaError (the sample becomes a
# listed skip); "keep" decodes what is there, the rest grey, as loaders that set Pillow's
# LOAD_TRUNCATED_IMAGES do (e.g. the image-text loaders of njustkmg/IJCAI25-BSS)
TRUNCATED = ("skip", "keep")


@contextmanager
def _tolerate_truncation(enabled: bool):
    """Pillow's global LOAD_TRUNCATED_IMAGES switched on for one decode (restored after)."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = enabled
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def read_image(path: Path, size: tuple[int, int] | int | None = 224, truncated: str = "skip") -> np.ndarray:
    """Decode a JPEG / PNG / … file into uint8 [H, W, 3] RGB (grey, palette and alpha images
    converted as Pillow's ``convert("RGB")``), resized like ``read_frames`` (size: (height, width),
    an int for a square, None = native; cv2.INTER_AREA).

    ``truncated``: see TRUNCATED. Raises MediaError naming the path when the file is missing,
    empty, not a decodable image or (with "skip") cut short.
    """
    if truncated not in TRUNCATED:
        raise ValueError(f"truncated must be one of {TRUNCATED}, got {truncated!r}")
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: image file does not exist")
    if path.stat().st_size == 0:
        raise MediaError(f"{path}: image file is empty")
    try:
        with Image.open(path) as image, _tolerate_truncation(truncated == "keep"):
            image.load()
            rgb = np.asarray(image.convert("RGB"))  # [H, W, 3] uint8
    except UnidentifiedImageError:
        raise MediaError(f"{path}: not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as err:  # Pillow's decoders report damage with these
        raise MediaError(f"{path}: cannot decode image ({err})") from None
    return resize_field(np.ascontiguousarray(rgb), size)
