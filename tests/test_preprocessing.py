"""One preprocessing: decoding of every pixel format, bad input, scaling and train/serve identity."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from PIL import Image

from model.data import Sample, load_arrays
from model.pipeline import ArrayBatches, Subtypes, make_dataset
from model.preprocessing import (
    ImageDecodeError,
    ImageTooLargeError,
    ImageTooSmallError,
    PreprocessSpec,
    decode_gray,
    preprocess_bytes,
    resize_gray,
    scale,
)
from tests.helpers import FIXTURES, XRAYS, fixture_images, make_dicom

XRAY_PATH = fixture_images()[0][0]


def _encode(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture(scope="module")
def xray() -> Image.Image:
    return Image.open(XRAY_PATH).convert("L")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "LA", "CMYK", "1"])
def test_every_pixel_format_decodes_to_gray8(xray: Image.Image, mode: str) -> None:
    if mode == "I;16":
        img = Image.fromarray(np.asarray(xray, dtype=np.uint16) * 257)
    else:
        img = xray.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    gray = decode_gray(_encode(img, fmt))
    assert gray.dtype == np.uint8 and gray.shape == xray.size[::-1]
    # every format keeps the picture (1-bit is dithered, so only roughly)
    min_correlation = 0.4 if mode == "1" else 0.95
    assert np.corrcoef(gray.ravel(), np.asarray(xray).ravel())[0, 1] > min_correlation


def test_sixteen_bit_uses_full_range() -> None:
    ramp = np.tile(np.linspace(1000, 3000, 64, dtype=np.uint16), (64, 1))
    gray = decode_gray(_encode(Image.fromarray(ramp)))
    assert gray.min() == 0 and gray.max() == 255


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", ImageDecodeError),
        (b"this is plain text, not an image", ImageDecodeError),
        (XRAY_PATH.read_bytes()[:2000], ImageDecodeError),
        (b"<html><body>hello</body></html>", ImageDecodeError),
    ],
    ids=["empty", "text", "truncated-jpeg", "html"],
)
def test_bad_bytes_raise_a_clear_error(data: bytes, error: type) -> None:
    with pytest.raises(error):
        decode_gray(data)


def test_decompression_bomb_is_rejected() -> None:
    bomb = _encode(Image.new("1", (12000, 12000)))  # small file, 144 megapixels
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLargeError):
        decode_gray(bomb)


def test_tiny_image_is_rejected() -> None:
    with pytest.raises(ImageTooSmallError):
        decode_gray(_encode(Image.new("L", (1, 1))))


@pytest.mark.parametrize("mode", ["squash", "pad", "crop", "trim"])
def test_resize_modes_give_square_output(xray: Image.Image, mode: str) -> None:
    out = resize_gray(np.asarray(xray), 96, mode)
    assert out.shape == (96, 96) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "scaling, module",
    [("caffe", "resnet50"), ("torch", "densenet"), ("tf", "mobilenet_v2"), ("raw", "efficientnet")],
)
def test_scaling_matches_keras_preprocess_input(scaling: str, module: str) -> None:
    import keras

    gray = np.random.default_rng(0).integers(0, 256, (2, 8, 8)).astype(np.float32)
    rgb = np.repeat(gray[..., None], 3, axis=-1)
    expected = getattr(keras.applications, module).preprocess_input(rgb.copy())
    np.testing.assert_allclose(scale(gray, scaling), expected, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("scaling", ["caffe", "tf"])
def test_training_pipeline_and_serving_give_identical_tensors(scaling: str) -> None:
    spec = PreprocessSpec(input_size=64, scaling=scaling)
    samples = [Sample(path, int(label == "PNEUMONIA")) for path, label in fixture_images()[:4]]
    images, labels, _ = load_arrays(samples, spec)
    (batch, _), = make_dataset(images, labels, spec, batch_size=4).take(1).as_numpy_iterator()
    served = np.stack([preprocess_bytes(s.path.read_bytes(), spec) for s in samples])
    assert batch.shape == served.shape == (4, 64, 64, 3)
    np.testing.assert_array_equal(batch, served)
    # the batches for backends without tf.data (JAX on a GPU host) are the same tensors
    array_batch, array_labels = ArrayBatches(images, labels, spec, batch_size=4)[0]
    np.testing.assert_array_equal(array_batch, served)
    np.testing.assert_array_equal(array_labels, labels)


def test_array_batches_shuffle_each_epoch_and_drop_the_partial_batch() -> None:
    spec = PreprocessSpec(input_size=32, scaling="tf")
    images = np.arange(10, dtype=np.uint8)[:, None, None] * np.ones((10, 32, 32), np.uint8)
    labels = np.arange(10, dtype=np.float32)
    batches = ArrayBatches(images, labels, spec, batch_size=4, shuffle=True, seed=1)
    assert len(batches) == 2 and len(ArrayBatches(images, labels, spec, batch_size=4)) == 3
    first = np.concatenate([batches[i][1] for i in range(len(batches))])
    batches.on_epoch_end()
    second = np.concatenate([batches[i][1] for i in range(len(batches))])
    assert len(set(first)) == 8 and not np.array_equal(first, second)
    x, y = batches[0]
    np.testing.assert_allclose(x[..., 0], images[y.astype(int)] / 127.5 - 1.0, atol=1e-6)


def test_subtype_batches_carry_both_targets_and_the_class_weights() -> None:
    spec = PreprocessSpec(input_size=32, scaling="tf")
    images = np.zeros((4, 32, 32), np.uint8)
    labels = np.array([0, 1, 1, 0], np.float32)
    subtypes = Subtypes(np.array([0, 1, 2, 0], np.int32), {0: 2.0, 1: 0.5})
    (_, targets, weights), = make_dataset(images, labels, spec, 4, subtypes=subtypes).take(1).as_numpy_iterator()
    _, array_targets, array_weights = ArrayBatches(images, labels, spec, 4, subtypes=subtypes)[0]
    for batch_targets, batch_weights in ((targets, weights), (array_targets, array_weights)):
        np.testing.assert_array_equal(batch_targets["pneumonia"], labels)
        np.testing.assert_array_equal(batch_targets["subtype"], [0, 1, 2, 0])
        np.testing.assert_allclose(batch_weights, [2.0, 0.5, 0.5, 2.0])
    unweighted = ArrayBatches(images, labels, spec, 4, subtypes=Subtypes(subtypes.labels))[0]
    assert len(unweighted) == 2  # validation batches: targets without weights


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_dicom_sixteen_bit_with_rescale_and_inversion(xray: Image.Image, photometric: str) -> None:
    original = np.asarray(xray)
    stored = original.astype(np.uint16) * 16  # 12-bit range in 16-bit words
    if photometric == "MONOCHROME1":
        stored = (4095 - stored).astype(np.uint16)  # bright means low attenuation
    gray = decode_gray(make_dicom(stored, photometric, slope=2.0, intercept=-100.0))
    assert gray.shape == original.shape and gray.dtype == np.uint8
    assert np.corrcoef(gray.ravel(), original.ravel())[0, 1] > 0.99  # same orientation after inversion


def _pydicom_sample(name: str) -> bytes:
    """One of the sample files that ship inside the pinned pydicom wheel (no download)."""
    from pydicom.data import get_testdata_file

    return open(get_testdata_file(name, download=False), "rb").read()


@pytest.mark.parametrize("compressed", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                        "MR_small_jp2klossless.dcm"])
def test_compressed_dicom_gives_the_film_of_the_uncompressed_file(compressed: str) -> None:
    """The same 16-bit image stored with lossless compression (RLE, JPEG-LS, JPEG 2000)."""
    assert np.array_equal(decode_gray(_pydicom_sample(compressed)), decode_gray(_pydicom_sample("MR_small.dcm")))


def test_jpeg_lossless_dicom_gives_the_film_it_was_made_from() -> None:
    """A PACS's usual transfer syntax (JPEG Lossless SV1), made with dcmtk's dcmcjpeg from a fixture X-ray
    stored as 16-bit DICOM (tests/fixtures/README.md)."""
    stored = np.asarray(Image.open(XRAYS / "NORMAL" / "NORMAL2-IM-1427-0001.jpeg").convert("L")).astype(np.uint16)
    compressed = (FIXTURES / "dicom" / "NORMAL2-IM-1427-0001_jpeg_lossless.dcm").read_bytes()
    assert pydicom.dcmread(io.BytesIO(compressed)).file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    assert np.array_equal(decode_gray(compressed), decode_gray(make_dicom(stored * 16)))


def test_corrupt_compressed_dicom_is_a_decode_error_or_a_film() -> None:
    """Hostile bytes reach a native JPEG decoder: each corruption gives a clean 4xx error or a film."""
    good = (FIXTURES / "dicom" / "NORMAL2-IM-1427-0001_jpeg_lossless.dcm").read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"error": 0, "film": 0}
    for _ in range(100):
        bad = bytearray(good)
        spots = rng.integers(1000, len(bad), 20)  # past the header, in the compressed pixel data
        for spot in spots:
            bad[spot] = int(rng.integers(0, 256))
        try:
            assert decode_gray(bytes(bad)).dtype == np.uint8
            outcomes["film"] += 1
        except ImageDecodeError:
            outcomes["error"] += 1
    assert outcomes["error"] and sum(outcomes.values()) == 100, outcomes


def test_twelve_bit_jpeg_dicom_is_decoded() -> None:
    ds = pydicom.dcmread(io.BytesIO(_pydicom_sample("JPGExtended.dcm")), stop_before_pixels=True)
    assert (ds.file_meta.TransferSyntaxUID.name, ds.BitsStored) == ("JPEG Extended (Process 2 and 4)", 12)
    gray = decode_gray(_pydicom_sample("JPGExtended.dcm"))
    assert gray.shape == (1024, 256) and gray.std() > 10


def test_colour_dicom_becomes_grey_as_a_colour_jpeg_does() -> None:
    data = _pydicom_sample("SC_jpeg_no_color_transform.dcm")  # JPEG baseline, RGB
    rgb = pydicom.dcmread(io.BytesIO(data)).pixel_array
    assert np.array_equal(decode_gray(data), np.asarray(Image.fromarray(rgb).convert("L")))
    with pytest.raises(ImageDecodeError, match="expected one frame"):
        decode_gray(_pydicom_sample("SC_rgb_rle_2frame.dcm"))


def test_malformed_dicom_is_a_decode_error() -> None:
    data = b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage" * 10
    with pytest.raises(ImageDecodeError, match="no pixel data"):
        decode_gray(data)


def test_truncated_dicom_is_named_truncated() -> None:
    data = make_dicom(np.full((48, 64), 128, np.uint8))
    pixels_at = data.index(b"\xe0\x7f\x10\x00")  # the Pixel Data element (7FE0,0010)
    with pytest.raises(ImageDecodeError, match="describes 64x48 pixels but ends before them \\(truncated"):
        decode_gray(data[:pixels_at])
    with pytest.raises(ImageDecodeError, match="pixel data is less than expected"):
        decode_gray(data[:-10])


def test_dicom_without_pixel_data_is_named() -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(np.zeros((64, 64), np.uint8))))
    del ds.PixelData  # e.g. a structured report or a header-only export
    buffer = io.BytesIO()
    ds.save_as(buffer)
    with pytest.raises(ImageDecodeError, match="DICOM file without an image"):
        decode_gray(buffer.getvalue())


def test_unsupported_format_is_named() -> None:
    from model.preprocessing import UnsupportedFormatError

    with pytest.raises(UnsupportedFormatError, match="JPEG, PNG or DICOM"):
        decode_gray(_encode(Image.new("L", (64, 64)), "BMP"))
