"""``to_model_mode``: every mode PIL opens read as the 8-bit grey or RGB image it shows, or refused with the reason.

Each mode's image is a real digit (sklearn's digits, ink bright on a dark ground) written by PIL, through a file
where PIL writes that mode.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from data.images import ImageModeError, open_image, to_model_mode

DIGIT = np.round(load_digits().images[0] * 255 / 16).astype(np.uint8)  # a zero, 8x8, 0..255
GREY = Image.fromarray(DIGIT)
RGB = GREY.convert("RGB")
INK = np.where(DIGIT > 0, 255, 0).astype(np.uint8)  # opaque ink, a transparent ground
ON_WHITE = np.where(DIGIT > 0, DIGIT, 255)  # the digit composited over white


def write_decompression_bomb(path: Path, side: int = 30000) -> Path:
    """A PNG whose header claims ``side`` x ``side`` grey pixels (900 million for 30000), with almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )
    return path


def saved(image: Image.Image, name: str, **options) -> Callable[[Path], Image.Image]:
    """The image as PIL reads it back from a file ``name``."""

    def make(directory: Path) -> Image.Image:
        image.save(directory / name, **options)
        return open_image(directory / name)

    return make


def in_memory(image: Image.Image) -> Callable[[Path], Image.Image]:
    return lambda directory: image


def sixteen_bit(dtype: str, mode: str) -> Image.Image:
    return Image.frombytes(mode, GREY.size, (DIGIT.astype(np.uint32) * 257).astype(dtype).tobytes())


SIXTEEN = sixteen_bit("<u2", "I;16")
PALETTE = GREY.convert("P")
BACKGROUND = int(np.asarray(PALETTE)[0, 0])  # the palette index of the dark ground

# mode: (how the image is made, the grey it must read as, how far off (PIL's colour-space round trips))
CASES = {
    "1": (saved(Image.fromarray(INK).convert("1"), "bilevel.png"), INK, 0),
    "L": (saved(GREY, "grey.png"), DIGIT, 0),
    "P": (saved(PALETTE, "palette.png"), DIGIT, 0),
    "P with transparency": (saved(PALETTE, "palette_t.png", transparency=BACKGROUND), ON_WHITE, 0),
    "LA": (saved(Image.merge("LA", (GREY, Image.fromarray(INK))), "grey_alpha.png"), ON_WHITE, 0),
    "PA": (in_memory(Image.merge("PA", (PALETTE, Image.fromarray(INK)))), ON_WHITE, 0),
    "RGB": (saved(RGB, "rgb.png"), DIGIT, 0),
    "RGBA": (saved(Image.merge("RGBA", (*RGB.split(), Image.fromarray(INK))), "rgba.png"), ON_WHITE, 0),
    "CMYK": (saved(RGB.convert("CMYK"), "cmyk.tif"), DIGIT, 0),
    "YCbCr": (in_memory(RGB.convert("YCbCr")), DIGIT, 1),
    "LAB": (saved(RGB.convert("LAB"), "lab.tif"), DIGIT, 2),
    "HSV": (in_memory(RGB.convert("HSV")), DIGIT, 0),
    "I;16": (saved(SIXTEEN, "grey16.png"), DIGIT, 0),
    "I;16 with transparency": (saved(SIXTEEN, "grey16_t.png", transparency=0), ON_WHITE, 0),
    "I;16 TIFF": (saved(SIXTEEN, "grey16.tif"), DIGIT, 0),
    "I;16B": (in_memory(sixteen_bit(">u2", "I;16B")), DIGIT, 0),
    "I;16L": (in_memory(sixteen_bit("<u2", "I;16L")), DIGIT, 0),
    "I;16N": (in_memory(sixteen_bit("=u2", "I;16N")), DIGIT, 0),
    "I;16 from a 16-bit PGM": (saved(SIXTEEN, "grey16.pgm"), DIGIT, 0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_mode_reads_as_the_8_bit_image(case: str, tmp_path: Path) -> None:
    make, expected, tolerance = CASES[case]
    image = make(tmp_path)
    assert image.mode == case.split(" ")[0]
    grey = np.asarray(to_model_mode(image, "L")).astype(int)
    rgb = np.asarray(to_model_mode(image, "RGB")).astype(int)
    assert grey.shape == expected.shape and rgb.shape == (*expected.shape, 3)
    assert np.abs(grey - expected).max() <= tolerance
    assert np.abs(rgb - expected[..., None]).max() <= tolerance


def test_the_full_16_bit_range_maps_to_0_255_rounded() -> None:
    values = np.arange(65536, dtype=np.uint32)
    image = Image.frombytes("I;16", (256, 256), values.astype("<u2").tobytes())
    grey = np.asarray(to_model_mode(image, "L")).ravel().astype(int)
    assert grey[0] == 0 and grey[-1] == 255
    assert np.array_equal(grey, np.round(values / 257).astype(int))


@pytest.mark.parametrize(
    ("image", "name", "what"),
    [
        (Image.fromarray(DIGIT.astype(np.int32) * 1000), "grey32.tif", "signed or 32-bit integer pixels (PIL mode I)"),
        (Image.fromarray(DIGIT.astype(np.float32) / 255), "float.tif", "32-bit floating-point pixels (PIL mode F)"),
    ],
    ids=["I", "F"],
)
def test_pixels_without_a_fixed_range_are_refused_saying_what_to_convert_to(
    image: Image.Image, name: str, what: str, tmp_path: Path
) -> None:
    image.save(tmp_path / name)
    with pytest.raises(ImageModeError) as info:
        to_model_mode(open_image(tmp_path / name), "L")
    assert str(info.value) == (
        f"{what} have no fixed range to map to 0..255; save it as an 8- or 16-bit image (PNG, for example)"
    )
