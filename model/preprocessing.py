"""The one preprocessing shared by training, evaluation, batch inference and the API.

An image goes through two steps:

1. :func:`load_gray` decodes JPEG/PNG bytes (8- or 16-bit, grey, RGB, RGBA, palette)
   to an 8-bit grey array and resizes it to the model's square input size.
2. :func:`scale` turns grey pixel values into the backbone's expected input: three
   identical channels with the per-channel affine scaling of the backbone's weights
   (``caffe`` for ResNet50, ``torch`` for DenseNet121, ``tf`` for MobileNetV2,
   ``raw`` for EfficientNet, which normalises inside the network).

:func:`scale` is written with broadcasting arithmetic only, so the same function runs
on NumPy arrays (serving) and TensorFlow tensors (the training pipeline, after
augmentation). The :class:`PreprocessSpec` is stored in the model's metadata.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow raises DecompressionBombError above twice this many pixels and warns above it;
# we turn the warning into an error too, so a bomb is always rejected.
MAX_IMAGE_PIXELS = 50_000_000
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
MIN_IMAGE_SIDE = 32

RESIZE_MODES = ("squash", "pad", "crop", "trim")
TRIM_FRACTION = 0.08  # of each side, for the "trim" resize mode

# out_channel = gray * SCALE[c] + OFFSET[c]; channel order is the backbone's.
_IMAGENET_MEAN_RGB = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD_RGB = np.array([0.229, 0.224, 0.225])
SCALINGS: dict[str, tuple[np.ndarray, np.ndarray]] = {
    # keras.applications.resnet50.preprocess_input: RGB->BGR, minus the BGR means.
    "caffe": (np.ones(3), -np.array([103.939, 116.779, 123.68])),
    # densenet.preprocess_input: /255, minus mean, divided by std (RGB).
    "torch": (1.0 / (255.0 * _IMAGENET_STD_RGB), -_IMAGENET_MEAN_RGB / _IMAGENET_STD_RGB),
    # mobilenet_v2.preprocess_input: to [-1, 1].
    "tf": (np.full(3, 1.0 / 127.5), np.full(3, -1.0)),
    # efficientnet: the network rescales internally; feed 0..255.
    "raw": (np.ones(3), np.zeros(3)),
}


class ImageDecodeError(ValueError):
    """The bytes are not an image we can read (empty, truncated, not an image)."""


class ImageTooLargeError(ImageDecodeError):
    """The image has more pixels than :data:`MAX_IMAGE_PIXELS` (a decompression bomb)."""


class ImageTooSmallError(ImageDecodeError):
    """The image is smaller than :data:`MIN_IMAGE_SIDE` on a side."""


class UnsupportedFormatError(ImageDecodeError):
    """The bytes are not JPEG, PNG or DICOM."""


SUPPORTED_FORMATS = ("jpeg", "png", "dicom")


def sniff_format(data: bytes) -> str | None:
    """``jpeg``, ``png`` or ``dicom`` from the file's magic bytes, else None."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[128:132] == b"DICM":
        return "dicom"
    return None


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw bytes become model input; saved in the model metadata."""

    input_size: int = 224
    scaling: str = "caffe"
    resize_mode: str = "squash"

    def __post_init__(self) -> None:
        if self.scaling not in SCALINGS:
            raise ValueError(f"unknown scaling {self.scaling!r}; expected one of {sorted(SCALINGS)}")
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"unknown resize mode {self.resize_mode!r}; expected one of {RESIZE_MODES}")
        if not 32 <= self.input_size <= 1024:
            raise ValueError(f"input size {self.input_size} out of range 32..1024")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreprocessSpec":
        return cls(**{k: data[k] for k in ("input_size", "scaling", "resize_mode") if k in data})


def _to_gray8(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit grey, scaling 16-bit and float data to the full range."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        return Image.fromarray(np.round(arr).astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L")
    return img.convert("L")


def decode_gray(data: bytes) -> np.ndarray:
    """Decode JPEG, PNG or DICOM bytes to a 2-D ``uint8`` grey array.

    Raises :class:`ImageDecodeError` (or a subclass) for anything that is not a
    readable image of a sensible size.
    """
    if not data:
        raise ImageDecodeError("empty file")
    kind = sniff_format(data)
    if kind is None:
        raise UnsupportedFormatError("unsupported file type: expected a JPEG, PNG or DICOM image")
    if kind == "dicom":
        return decode_dicom(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                _check_size(*img.size)
                img.load()
                img = ImageOps.exif_transpose(img) or img
                gray = _to_gray8(img)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image exceeds the pixel limit: {exc}") from exc
    except ImageDecodeError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(f"corrupt {kind.upper()} file: not decodable") from exc
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as exc:
        raise ImageDecodeError(f"corrupt or truncated {kind.upper()} file: {exc}") from exc
    return np.asarray(gray, dtype=np.uint8)


def _check_size(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageTooLargeError(f"image of {width}x{height} pixels exceeds the limit of {MAX_IMAGE_PIXELS} pixels")
    if min(width, height) < MIN_IMAGE_SIDE:
        raise ImageTooSmallError(
            f"image of {width}x{height} pixels is too small; need at least {MIN_IMAGE_SIDE} px a side"
        )


def decode_dicom(data: bytes) -> np.ndarray:
    """DICOM bytes to ``uint8`` grey: rescale slope/intercept, VOI window, MONOCHROME1 inverted; a
    colour frame (a secondary capture) becomes grey as a colour JPEG does. Uncompressed, RLE, JPEG
    (baseline, 12-bit extended, lossless), JPEG-LS and JPEG 2000 pixel data."""
    import pydicom  # deferred: only DICOM uploads need it
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
        if "PixelData" not in ds and "Rows" in ds and "Columns" in ds:  # cut off, or a header-only export
            raise ImageDecodeError(f"DICOM file without an image: it describes {ds.Columns}x{ds.Rows} pixels but "
                                   "ends before them (truncated, or exported without pixel data)")
        if "PixelData" not in ds:
            raise ImageDecodeError("DICOM file without an image: it holds no pixel data")
        rows, cols = int(ds.Rows), int(ds.Columns)
        _check_size(cols, rows)
        pixels = ds.pixel_array  # colour as RGB, whatever the stored colour space
        if int(ds.get("SamplesPerPixel", 1)) == 3 and pixels.shape == (rows, cols, 3):
            if pixels.dtype == np.uint8:
                return np.asarray(Image.fromarray(pixels, mode="RGB").convert("L"), dtype=np.uint8)
            values = pixels.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # Pillow's weights
        elif pixels.ndim == 2:
            values = apply_voi_lut(apply_modality_lut(pixels, ds), ds).astype(np.float64)
        else:
            raise ImageDecodeError(f"DICOM with pixel data of shape {pixels.shape}; expected one frame")
    except ImageDecodeError:
        raise
    except Exception as exc:  # pydicom raises many types for malformed files
        raise ImageDecodeError(f"unreadable DICOM file: {exc}") from exc
    lo, hi = float(values.min()), float(values.max())
    values = (values - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper() == "MONOCHROME1":
        values = 255.0 - values
    return np.round(values).astype(np.uint8)


def resize_gray(gray: np.ndarray, size: int, mode: str = "squash") -> np.ndarray:
    """Resize a grey image to ``size`` x ``size``.

    ``squash`` ignores the aspect ratio (as the uploader of most training images did),
    ``pad`` letterboxes with black, ``crop`` takes the central square, ``trim`` cuts
    :data:`TRIM_FRACTION` off every side (where burned-in markers sit) and then squashes.
    """
    img = Image.fromarray(gray, mode="L")
    if mode == "trim":
        w, h = img.size
        dx, dy = round(w * TRIM_FRACTION), round(h * TRIM_FRACTION)
        img, mode = img.crop((dx, dy, w - dx, h - dy)), "squash"
    if mode == "pad":
        img = ImageOps.pad(img, (size, size), method=Image.Resampling.BILINEAR, color=0)
    elif mode == "crop":
        img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR)
    elif mode == "squash":
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    return np.asarray(img, dtype=np.uint8)


def resize_films(films: list[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Decoded grey films of any size to a ``(N, size, size)`` ``uint8`` batch."""
    return np.stack([resize_gray(film, spec.input_size, spec.resize_mode) for film in films])


def load_gray(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """Bytes to a ``(size, size)`` ``uint8`` grey array: the cached part of the pipeline."""
    return resize_gray(decode_gray(data), spec.input_size, spec.resize_mode)


def scale(gray: Any, scaling: str) -> Any:
    """Grey pixels ``(..., H, W)`` in 0..255 to model input ``(..., H, W, 3)``.

    Works for NumPy arrays and TensorFlow tensors alike (float32 result).
    """
    gain, offset = SCALINGS[scaling]
    return gray[..., None] * gain.astype(np.float32) + offset.astype(np.float32)


def preprocess_bytes(data: bytes, spec: PreprocessSpec) -> np.ndarray:
    """Bytes to one model input of shape ``(size, size, 3)``, float32."""
    return scale(load_gray(data, spec).astype(np.float32), spec.scaling).astype(np.float32)
