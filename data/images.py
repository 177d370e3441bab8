"""Image files a user hands over, read as the networks take them: 8-bit grey (``L``) or ``RGB``, whatever PIL's mode.

``open_image`` and ``to_model_mode`` are the one reading of ``scripts/predict.py`` (``load_model``'s preprocessing)
and of ``data=imagefolder``; every mode PIL opens is read as it looks, or refused with the reason:

- 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``RGBX``, ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``): PIL's conversion
  (CMYK without colour management).
- 16-bit grey (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``: 16-bit PNG and TIFF files): the full range 0..65535 to
  0..255, a value v to round(v / 257). PIL's own ``convert("L")`` clips every value above 255 to white.
- ``I`` (signed or 32-bit integer TIFFs, arrays) and ``F`` (32-bit floating point) have no fixed range to map to
  0..255: refused. (``open_image`` reads a 16-bit PGM, which PIL opens as ``I`` scaled to 0..65535, as ``I;16``.)
- Transparency (``LA``, ``PA``, ``RGBA``, ``RGBa``, or a transparent colour of ``P``, ``L``, ``RGB``, 16-bit grey):
  composited over white, as a viewer shows the image on a white page (and as Hugging Face's ``convert_to_rgb``
  does). Dropping the alpha channel would show whatever colour the writing program left under transparent pixels,
  often black: a black drawing on a transparent background would be blank.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
MODES = {1: "L", 3: "RGB"}
UNUSABLE = {
    "I": "signed or 32-bit integer pixels (PIL mode I)",
    "F": "32-bit floating-point pixels (PIL mode F)",
}


class ImageModeError(ValueError):
    """An image whose pixels have no defined reading as 8-bit grey or RGB; the message says why and what to do."""


def open_image(path: str | Path) -> Image.Image:
    """The image in ``path``, decoded now (the file is closed again), raising whatever PIL raises for a file it
    cannot decode, ``DecompressionBombError`` included. A 16-bit PGM, which PIL reads as ``I`` scaled to 0..65535,
    comes as ``I;16``."""
    with Image.open(path) as opened:
        opened.load()
        return opened.convert("I;16") if opened.mode == "I" and opened.format == "PPM" else opened.copy()


def why_unreadable(err: Exception) -> str:
    """Why an image could not be read or used, in one line."""
    if isinstance(err, UnidentifiedImageError):
        return "not an image format PIL recognises (or a damaged header)"
    if isinstance(err, ImageModeError):
        return str(err)
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0]}" if text else type(err).__name__


def _sixteen_bit_to_grey(image: Image.Image) -> Image.Image:
    """16-bit grey (0..65535) as 8-bit grey (0..255), with its transparent value, if any, as an alpha channel."""
    pixels = np.asarray(image).astype(np.uint32)
    grey = Image.fromarray(((pixels + 128) // 257).astype(np.uint8))
    transparent = image.info.get("transparency")
    if not isinstance(transparent, int):
        return grey
    alpha = Image.fromarray(np.where(pixels == transparent, 0, 255).astype(np.uint8))
    return Image.merge("LA", (grey, alpha))


def to_model_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image``, of any mode PIL opens, as 8-bit ``mode`` (``L`` or ``RGB``); raises ``ImageModeError`` for pixels
    without a fixed range (PIL modes ``F``, and ``I`` other than a 16-bit PGM's)."""
    if image.mode in SIXTEEN_BIT:
        image = _sixteen_bit_to_grey(image)
    elif image.mode in UNUSABLE:
        raise ImageModeError(
            f"{UNUSABLE[image.mode]} have no fixed range to map to 0..255; save it as an 8- or 16-bit image "
            "(PNG, for example)"
        )
    if image.has_transparency_data:
        rgba = image.convert("RGBA")  # a transparent colour becomes alpha 0
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), rgba)
    if image.mode not in ("1", "L", "RGB"):
        image = image.convert("RGB")
    return image.convert(mode)
