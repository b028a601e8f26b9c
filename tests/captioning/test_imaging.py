"""Upload checks and normalisation in captioning.imaging, on real files."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image, ImageOps

from captioning import imaging


def open_bytes(path) -> io.BytesIO:
    return io.BytesIO(path.read_bytes())


def png_bytes(width: int, height: int, mode: str = "RGB") -> io.BytesIO:
    buffer = io.BytesIO()
    Image.new(mode, (width, height), "gray").save(buffer, format="PNG")
    buffer.seek(0)
    return buffer


def normalised(path) -> Image.Image:
    return imaging.image_read_normalised(file=open_bytes(path))


def on_white(image: Image.Image) -> Image.Image:
    """Composite an image onto white with numpy, independently of the code under test."""
    rgba = np.asarray(image.convert("RGBA"), float)
    alpha = rgba[..., 3:] / 255
    return Image.fromarray(np.rint(rgba[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8))


def mean_abs_difference(first: Image.Image, second: Image.Image) -> float:
    return float(np.abs(np.asarray(first, float) - np.asarray(second, float)).mean())


# upload_check


class TestUploadCheck:
    def test_exif_rotated_photo_is_recorded_upright(self, bad_inputs_dir):
        """A photo stored sideways with EXIF orientation 6 is recorded as shown: 640x426."""
        checked = imaging.upload_check(file=open_bytes(bad_inputs_dir / "exif-orientation-6.jpg"))
        assert checked.format == "JPEG"
        assert (checked.width, checked.height) == (640, 426)

    def test_format_comes_from_content_not_name(self, bad_inputs_dir):
        """A PNG named .txt is a PNG, stored with the png extension."""
        checked = imaging.upload_check(file=open_bytes(bad_inputs_dir / "png-named.txt"))
        assert checked.format == "PNG"
        assert checked.extension == "png"
        assert checked.mime_type == "image/png"

    def test_facts_include_size_and_hash(self, bad_inputs_dir):
        path = bad_inputs_dir / "grayscale.jpg"
        checked = imaging.upload_check(file=open_bytes(path))
        assert checked.byte_size == path.stat().st_size
        assert len(checked.sha256) == 64

    def test_file_position_is_rewound(self, bad_inputs_dir):
        file = open_bytes(bad_inputs_dir / "cmyk.jpg")
        imaging.upload_check(file=file)
        assert file.tell() == 0

    def test_empty_file_is_rejected(self, bad_inputs_dir):
        with pytest.raises(imaging.EmptyFile) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "empty.png"))
        assert raised.value.code == "empty_file"
        assert "empty" in raised.value.message

    def test_byte_limit_names_size_and_limit(self, settings, bad_inputs_dir):
        settings.MAX_UPLOAD_BYTES = 10_000
        with pytest.raises(imaging.ImageTooLarge) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "cmyk.jpg"))
        assert raised.value.code == "image_too_large"
        assert "9.8 KB" in raised.value.message  # 10,000 bytes
        assert raised.value.details["max_bytes"] == 10_000

    def test_bomb_is_rejected_from_header(self, bad_inputs_dir):
        """The 15000x15000 PNG is rejected before any pixel is decoded, naming 40 MP."""
        with pytest.raises(imaging.TooManyPixels) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "bomb-15000x15000.png"))
        assert raised.value.code == "too_many_pixels"
        assert "40,000,000 pixels" in raised.value.message
        assert "15000x15000 (225,000,000 pixels)" in raised.value.message
        assert raised.value.details["width"] == 15000

    def test_pixel_limit_between_one_and_two_times(self, settings):
        """Above the limit but below Pillow's own error threshold, the exact size is named."""
        settings.MAX_IMAGE_PIXELS = 60 * 60
        with pytest.raises(imaging.TooManyPixels) as raised:
            imaging.upload_check(file=png_bytes(80, 60))
        assert "80x60 (4,800 pixels)" in raised.value.message
        assert "3,600 pixels" in raised.value.message

    def test_raised_pixel_limit_is_honoured(self, settings):
        """Pillow's own guard follows the setting, so a raised limit accepts larger images."""
        settings.MAX_IMAGE_PIXELS = 100
        with pytest.raises(imaging.TooManyPixels):
            imaging.upload_check(file=png_bytes(64, 64))
        settings.MAX_IMAGE_PIXELS = 10_000
        assert imaging.upload_check(file=png_bytes(64, 64)).width == 64

    def test_one_pixel_image_names_minimum(self, bad_inputs_dir):
        with pytest.raises(imaging.ImageTooSmall) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "one-pixel.png"))
        assert raised.value.code == "image_too_small"
        assert "32x32" in raised.value.message

    def test_minimum_side_applies_to_either_side(self):
        with pytest.raises(imaging.ImageTooSmall):
            imaging.upload_check(file=png_bytes(400, 31))

    def test_truncated_jpeg_is_rejected(self, bad_inputs_dir):
        with pytest.raises(imaging.ImageCorrupt) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "truncated.jpg"))
        assert raised.value.code == "image_corrupt"
        assert "truncated or corrupt" in raised.value.message

    def test_html_behind_gif_magic_is_rejected(self, bad_inputs_dir):
        with pytest.raises(imaging.ImageRejected) as raised:
            imaging.upload_check(file=open_bytes(bad_inputs_dir / "gif-header-html.gif"))
        assert raised.value.code in ("unsupported_format", "image_corrupt")

    def test_unaccepted_format_is_rejected(self):
        """ICO is a format Pillow reads, but not one the service accepts."""
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64)).save(buffer, format="ICO")
        buffer.seek(0)
        with pytest.raises(imaging.UnsupportedFormat) as raised:
            imaging.upload_check(file=buffer)
        assert "JPEG, PNG, WebP, GIF, BMP or TIFF" in raised.value.message

    @pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
    def test_every_accepted_format_passes(self, image_format):
        buffer = io.BytesIO()
        Image.new("RGB", (48, 40), "teal").save(buffer, format=image_format)
        buffer.seek(0)
        checked = imaging.upload_check(file=buffer)
        assert checked.format == image_format
        assert (checked.width, checked.height) == (48, 40)


# image_normalise


class TestImageNormalise:
    def test_exif_rotation_matches_upright_copy(self, bad_inputs_dir):
        """The sideways photo, once turned, matches the same photo stored upright."""
        rotated = normalised(bad_inputs_dir / "exif-orientation-6.jpg")
        upright = normalised(bad_inputs_dir / "cmyk.jpg")
        assert rotated.size == (640, 426)
        assert mean_abs_difference(rotated, upright) < 5

    def test_cmyk_colours_stay_natural(self, bad_inputs_dir):
        """Adobe CMYK converts to the same colours as the RGB copy of the photo, not inverted."""
        cmyk = normalised(bad_inputs_dir / "cmyk.jpg")
        rgb = ImageOps.exif_transpose(Image.open(bad_inputs_dir / "exif-orientation-6.jpg"))
        assert cmyk.mode == "RGB"
        assert mean_abs_difference(cmyk, rgb.convert("RGB")) < 5

    def test_gray16_becomes_a_gradient(self, bad_inputs_dir):
        """Values 30000..50000 scale to about 117..194, not to a white square."""
        image = normalised(bad_inputs_dir / "gray16.png")
        values = np.asarray(image)
        assert image.mode == "RGB"
        assert 100 < values.min() < 130
        assert 180 < values.max() < 200

    def test_palette_transparency_flattens_without_warnings(self, bad_inputs_dir):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            image = normalised(bad_inputs_dir / "palette-transparent.png")
        assert image.mode == "RGB"
        assert np.asarray(image).mean() > 200

    def test_half_transparent_rgba_flattens_onto_white(self, bad_inputs_dir):
        """Alpha 128 blends every pixel halfway to white, never towards black."""
        path = bad_inputs_dir / "rgba-half-transparent.png"
        image = normalised(path)
        with Image.open(path) as original:
            expected = on_white(original)
            rgba = np.asarray(original.convert("RGBA"), float)
        on_black = rgba[..., :3] * rgba[..., 3:] / 255
        assert image.mode == "RGB"
        assert mean_abs_difference(image, expected) < 1
        assert np.asarray(image).mean() > on_black.mean() + 50

    def test_grayscale_gets_three_channels(self, bad_inputs_dir):
        image = normalised(bad_inputs_dir / "grayscale.jpg")
        assert image.mode == "RGB"
        assert np.asarray(image).shape == (426, 640, 3)

    def test_animated_gif_uses_first_frame(self, bad_inputs_dir):
        path = bad_inputs_dir / "animated-two-palettes.gif"
        with Image.open(path) as gif:
            first = on_white(gif)
            gif.seek(1)
            second = on_white(gif)
        image = normalised(path)
        assert mean_abs_difference(image, first) == 0
        assert mean_abs_difference(image, second) > 0

    def test_gray_alpha_flattens_onto_white(self):
        buffer = io.BytesIO()
        Image.new("LA", (40, 40), (0, 0)).save(buffer, format="PNG")
        buffer.seek(0)
        image = imaging.image_read_normalised(file=buffer)
        assert np.asarray(image).min() == 255
