"""Photo checks: what is accepted, what is refused, and what re-encoding removes."""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib

import pytest
from PIL import ExifTags, Image, ImageFile, PngImagePlugin

from claims import photos
from claims.photos import MAX_PHOTO_BYTES, PhotoRejected, clean_photo

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ONLY_PHOTOS = "only JPEG, PNG and WebP"
DAMAGED = "damaged or not a real photo"
SECRET = b"<script>alert('lat=52.52 lon=13.40')</script>"


def encode(fmt: str, size: tuple[int, int] = (20, 10), mode: str = "RGB", **params) -> bytes:
    """A small image in ``fmt``: red left half, blue right half."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    out = io.BytesIO()
    image.convert(mode).save(out, fmt, **params)
    return out.getvalue()


def noisy_jpeg(size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.effect_noise((size, size), 60).convert("RGB").save(out, "JPEG")
    return out.getvalue()


def gps_exif(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.Base.Orientation] = orientation
    exif.get_ifd(ExifTags.IFD.GPSInfo).update({
        ExifTags.GPS.GPSLatitudeRef: "N",
        ExifTags.GPS.GPSLatitude: (52.0, 31.0, 12.0),
        ExifTags.GPS.GPSLongitudeRef: "E",
        ExifTags.GPS.GPSLongitude: (13.0, 24.0, 36.0),
    })
    return exif


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def one_bit_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG, built row block by row block so a huge one stays cheap."""
    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    idat = []
    for top in range(0, height, 1000):
        idat.append(compressor.compress(row * min(1000, height - top)))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (PNG_MAGIC + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"".join(idat))
            + png_chunk(b"IEND", b""))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records every image whose pixels get decoded."""
    calls: list[str] = []
    original = ImageFile.ImageFile.load

    def spy(self):
        calls.append(f"{self.format} {self.size}")
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    return calls


# Accepted photos --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mode", "magic", "content_type", "extension"),
    [
        pytest.param("JPEG", "RGB", JPEG_MAGIC, "image/jpeg", "jpg", id="jpeg"),
        pytest.param("JPEG", "L", JPEG_MAGIC, "image/jpeg", "jpg", id="jpeg-greyscale"),
        pytest.param("JPEG", "CMYK", JPEG_MAGIC, "image/jpeg", "jpg", id="jpeg-cmyk"),
        pytest.param("PNG", "RGB", PNG_MAGIC, "image/png", "png", id="png"),
        pytest.param("PNG", "RGBA", PNG_MAGIC, "image/png", "png", id="png-alpha"),
        pytest.param("PNG", "P", PNG_MAGIC, "image/png", "png", id="png-palette"),
        pytest.param("PNG", "I;16", PNG_MAGIC, "image/png", "png", id="png-16-bit"),
        pytest.param("WEBP", "RGB", b"RIFF", "image/webp", "webp", id="webp"),
        pytest.param("WEBP", "RGBA", b"RIFF", "image/webp", "webp", id="webp-alpha"),
    ],
)
def test_accepts_and_reencodes_jpeg_png_and_webp(fmt, mode, magic, content_type, extension):
    photo = clean_photo(encode(fmt, mode=mode))

    assert photo.data.startswith(magic)
    assert (photo.content_type, photo.extension) == (content_type, extension)
    assert (photo.width, photo.height) == (20, 10)
    assert photo.sha256 == hashlib.sha256(photo.data).hexdigest()
    with opened(photo.data) as image:
        assert image.format == fmt
        assert image.size == (20, 10)


def test_webp_output_is_a_riff_webp_container():
    assert clean_photo(encode("WEBP")).data[8:12] == b"WEBP"


def test_cleaning_twice_gives_the_same_bytes_and_hash():
    data = encode("PNG")

    assert clean_photo(data) == clean_photo(data)


def test_keeps_the_pictures_colours():
    with opened(clean_photo(encode("PNG")).data) as image:
        assert image.getpixel((2, 5))[:3] == (255, 0, 0)
        assert image.getpixel((17, 5))[:3] == (0, 0, 255)


# Metadata is stripped ---------------------------------------------------------------------


def test_strips_exif_with_gps_position_from_jpeg():
    data = encode("JPEG", exif=gps_exif())
    with opened(data) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)  # the test photo has a GPS fix

    photo = clean_photo(data)

    with opened(photo.data) as image:
        assert not image.getexif()
        assert not image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert "exif" not in image.info
    assert b"Exif\0\0" not in photo.data
    assert b"SpyCam" not in photo.data


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_strips_exif_with_gps_position_from_png_and_webp(fmt):
    photo = clean_photo(encode(fmt, exif=gps_exif()))

    with opened(photo.data) as image:
        assert not image.getexif()
        assert "exif" not in image.info
    assert b"SpyCam" not in photo.data


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_applies_the_exif_orientation_before_dropping_it(fmt):
    photo = clean_photo(encode(fmt, exif=gps_exif(orientation=6)))  # "rotate 90° clockwise"

    assert (photo.width, photo.height) == (10, 20)
    with opened(photo.data) as image:
        assert image.size == (10, 20)
        assert not image.getexif()  # no orientation left for a viewer to apply twice
        # The left (red) half of the stored picture is now the top half.
        rgb = image.convert("RGB")
        top, bottom = rgb.getpixel((5, 2)), rgb.getpixel((5, 17))
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


METADATA = [
    pytest.param("JPEG", {"icc_profile": SECRET}, id="jpeg-icc-profile"),
    pytest.param("WEBP", {"icc_profile": SECRET}, id="webp-icc-profile"),
    pytest.param("PNG", {"icc_profile": SECRET}, id="png-icc-profile"),
    pytest.param("JPEG", {"comment": SECRET}, id="jpeg-comment"),
    pytest.param("JPEG", {"xmp": SECRET}, id="jpeg-xmp"),
    pytest.param("WEBP", {"xmp": SECRET}, id="webp-xmp"),
]


@pytest.mark.parametrize(("fmt", "params"), METADATA)
def test_drops_other_metadata(fmt, params):
    data = encode(fmt, **params)
    with opened(data) as original:
        assert set(params) <= set(original.info)  # the metadata really was written

    photo = clean_photo(data)

    with opened(photo.data) as image:
        assert not set(params) & set(image.info)
    assert SECRET not in photo.data


def test_drops_png_text_chunks():
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", SECRET.decode())
    text.add_itxt("Location", "52.52,13.40")

    photo = clean_photo(encode("PNG", pnginfo=text))

    with opened(photo.data) as image:
        assert not {"Comment", "Location"} & set(image.info)
    assert SECRET not in photo.data


# Polyglots --------------------------------------------------------------------------------


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("evil.html", SECRET)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "payload"),
    [
        pytest.param("JPEG", zip_archive(), id="jpeg-plus-zip"),
        pytest.param("JPEG", b"<html><body>" + SECRET + b"</body></html>", id="jpeg-plus-html"),
        pytest.param("PNG", zip_archive(), id="png-plus-zip"),
        pytest.param("PNG", b"<html>" + SECRET + b"</html>", id="png-plus-html"),
    ],
)
def test_polyglot_is_accepted_but_the_appended_payload_is_gone(fmt, payload):
    polyglot = encode(fmt) + payload
    if payload.startswith(b"PK"):
        assert zipfile.is_zipfile(io.BytesIO(polyglot))  # a real polyglot going in

    photo = clean_photo(polyglot)

    assert not zipfile.is_zipfile(io.BytesIO(photo.data))
    assert SECRET not in photo.data
    assert b"<html" not in photo.data
    assert b"evil.html" not in photo.data


# Refused files ----------------------------------------------------------------------------


def test_refuses_an_empty_file():
    with pytest.raises(PhotoRejected, match="empty"):
        clean_photo(b"")


def test_refuses_a_file_over_the_size_limit_before_reading_it(decoded):
    too_big = noisy_jpeg() + b"\0" * MAX_PHOTO_BYTES

    with pytest.raises(PhotoRejected, match="larger than 5 MB"):
        clean_photo(too_big)
    assert decoded == []


def test_accepts_a_file_of_exactly_the_size_limit():
    jpeg = noisy_jpeg()
    padded = jpeg + b"\0" * (MAX_PHOTO_BYTES - len(jpeg))

    assert len(padded) == MAX_PHOTO_BYTES
    assert clean_photo(padded).content_type == "image/jpeg"


def test_refuses_one_byte_over_the_size_limit():
    with pytest.raises(PhotoRejected, match="larger"):
        clean_photo(JPEG_MAGIC + b"\0" * (MAX_PHOTO_BYTES - 2))


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"Dear support, my kettle is broken.\n", id="text"),
        pytest.param(b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", id="pdf"),
        pytest.param(encode("GIF"), id="gif"),
        pytest.param(encode("BMP"), id="bmp"),
        pytest.param(encode("TIFF"), id="tiff"),
        pytest.param(
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" '
            b'height="10"><script>alert(1)</script></svg>',
            id="svg",
        ),
        pytest.param(b"<svg onload=alert(1)>", id="bare-svg"),
        pytest.param(zip_archive(), id="zip"),
        pytest.param(b"RIFF\0\0\0\0WAVEfmt ", id="riff-wave"),
        pytest.param(b"\xff\xd8", id="two-bytes-of-jpeg-magic"),
        pytest.param(b"GIF89a" + encode("JPEG"), id="gif-header-then-jpeg"),
    ],
)
def test_refuses_anything_but_jpeg_png_and_webp(data):
    with pytest.raises(PhotoRejected, match=ONLY_PHOTOS):
        clean_photo(data)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(JPEG_MAGIC + b"this is not really a photo" * 10, id="jpeg-magic-garbage"),
        pytest.param(JPEG_MAGIC + encode("PNG"), id="jpeg-magic-then-png"),
        pytest.param(JPEG_MAGIC + b"\xe0", id="jpeg-magic-and-one-byte"),
        pytest.param(PNG_MAGIC + b"garbage" * 10, id="png-magic-garbage"),
        pytest.param(b"RIFF\x20\0\0\0WEBPVP8 garbage-garbage", id="webp-magic-garbage"),
        pytest.param(noisy_jpeg()[:600], id="jpeg-truncated-early"),
        pytest.param(noisy_jpeg()[:-20], id="jpeg-truncated-late"),
        pytest.param(encode("PNG", size=(64, 64))[:-30], id="png-truncated"),
        pytest.param(encode("WEBP", size=(64, 64))[:-10], id="webp-truncated"),
    ],
)
def test_refuses_damaged_or_fake_images(data):
    with pytest.raises(PhotoRejected, match=DAMAGED):
        clean_photo(data)


def test_refuses_a_png_with_a_broken_checksum():
    data = bytearray(encode("PNG"))
    data[-20] ^= 0xFF  # inside the last IDAT chunk, so its CRC no longer matches

    with pytest.raises(PhotoRejected, match=DAMAGED):
        clean_photo(bytes(data))


# Pixel limits -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height"),
    [
        pytest.param(6001, 4000, id="just-over-24-megapixels"),
        pytest.param(100_000, 300, id="very-wide-strip"),
        pytest.param(10_000, 10_000, id="100-megapixels"),
        pytest.param(30_000, 30_000, id="900-megapixels"),
    ],
)
def test_refuses_a_decompression_bomb_without_decoding_it(decoded, width, height):
    bomb = one_bit_png(width, height)
    assert len(bomb) < MAX_PHOTO_BYTES  # small on the wire, huge in memory

    with pytest.raises(PhotoRejected):
        clean_photo(bomb)
    assert decoded == []


def test_decode_spy_sees_an_ordinary_photo_being_decoded(decoded):
    clean_photo(encode("PNG"))

    assert decoded  # so the empty list in the bomb test means "never decoded"


def test_says_too_many_pixels_when_over_the_photo_limit():
    with pytest.raises(PhotoRejected, match="too many pixels"):
        clean_photo(one_bit_png(6001, 4000))


def test_pixel_limit_is_inclusive(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(photos, "MAX_PIXELS", 200)

    assert clean_photo(encode("PNG", size=(20, 10))).width == 20
    with pytest.raises(PhotoRejected, match="too many pixels"):
        clean_photo(encode("PNG", size=(20, 11)))


def test_accepts_a_multi_picture_jpeg_from_a_phone():
    out = io.BytesIO()
    first, depth_map = Image.new("RGB", (20, 10), "red"), Image.new("RGB", (20, 10), "grey")
    first.save(out, "MPO", save_all=True, append_images=[depth_map])
    assert out.getvalue().startswith(JPEG_MAGIC)

    photo = clean_photo(out.getvalue())

    assert (photo.content_type, photo.width, photo.height) == ("image/jpeg", 20, 10)
