"""Photo checks: type from the bytes, size and pixel limits, verified and re-encoded by Pillow.

Re-encoding drops everything but pixels: EXIF (GPS position included), ICC tricks and any
polyglot payload appended to the file.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PHOTO_BYTES = 5 * 1024 * 1024
MAX_PHOTOS = 5
MAX_PIXELS = 24_000_000  # a 6000x4000 phone photo; anything bigger is refused unread
FORMATS = {
    "JPEG": ("image/jpeg", "jpg"),
    "PNG": ("image/png", "png"),
    "WEBP": ("image/webp", "webp"),
}


class PhotoRejected(ValueError):
    """A photo that is not an acceptable JPEG/PNG/WebP image; the message says why."""


@dataclass(frozen=True)
class CleanPhoto:
    data: bytes
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str


def sniff_format(data: bytes) -> str | None:
    """The image format the first bytes declare, whatever the filename or header claimed."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def clean_photo(data: bytes) -> CleanPhoto:
    """Validate one uploaded photo and return it re-encoded without metadata."""
    if not data:
        raise PhotoRejected("the file is empty")
    if len(data) > MAX_PHOTO_BYTES:
        raise PhotoRejected(f"the file is larger than {MAX_PHOTO_BYTES // (1024 * 1024)} MB")
    declared = sniff_format(data)
    if declared is None:
        raise PhotoRejected("only JPEG, PNG and WebP photos are accepted")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as probe:
                # Phone cameras write multi-picture JPEGs (MPO: a depth map or preview
                # beside the photo); the first frame is the photo.
                actual = "JPEG" if probe.format == "MPO" else probe.format
                if actual != declared:
                    raise PhotoRejected("the file content does not match its image type")
                width, height = probe.size
                if width * height > MAX_PIXELS or width < 1 or height < 1:
                    raise PhotoRejected("the image has too many pixels")
                probe.verify()
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                image = ImageOps.exif_transpose(image)  # keep the orientation, drop the EXIF
                return _reencode(image, declared)
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected("the image has too many pixels") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise PhotoRejected("the image is damaged or not a real photo") from exc


def _reencode(image: Image.Image, fmt: str) -> CleanPhoto:
    # Encoders copy comments and ICC profiles from ``info``: clear it so only pixels remain.
    image.info.clear()
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("RGB").save(out, "JPEG", quality=85, optimize=True)
    elif fmt == "PNG":
        mode = "RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"
        image.convert(mode).save(out, "PNG", optimize=True)
    else:
        mode = "RGBA" if image.mode in ("RGBA", "LA", "P") else "RGB"
        image.convert(mode).save(out, "WEBP", quality=85)
    data = out.getvalue()
    content_type, extension = FORMATS[fmt]
    return CleanPhoto(data, content_type, extension, image.width, image.height,
                      hashlib.sha256(data).hexdigest())
