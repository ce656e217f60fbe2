"""An image's format and size read from its header, before anything is decoded.

``cv2.imdecode`` allocates the whole picture as its header declares it: a few hundred bytes of PNG
that claim 50000x50000 pixels make it reserve gigabytes (a decompression bomb). :func:`decode_image`
reads the format and the size from the header first and refuses a picture over ``max_pixels``,
a header it cannot read, a format it does not know, and a body that ends before the image does,
each with an :class:`ImageRefused` naming why; only then does OpenCV decode it.

Formats read: PNG, JPEG, BMP, GIF, WebP, TIFF, PBM/PGM/PPM/PAM/PFM, Sun raster, JPEG 2000 (jp2 and
codestream), Radiance HDR. Every read is bounds-checked: a malformed header is refused, never an
exception of another kind.
"""

from __future__ import annotations

import re
import struct

from .errors import MegFlowError


class ImageRefused(MegFlowError):
    """The body is not an image this server decodes; ``status`` is the HTTP status to answer (400
    unreadable or corrupt, 413 too many pixels), ``str()`` the reason."""

    def __init__(self, status: int, reason: str):
        self.status, self.reason = status, reason
        super().__init__(reason)


class _Short(Exception):
    """A read past the end of the body."""


def _unpack(fmt: str, body: bytes, offset: int) -> tuple:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(body):
        raise _Short()
    return struct.unpack_from(fmt, body, offset)


def _png(body: bytes):
    length, tag, width, height = _unpack(">I4sII", body, 8)
    if tag != b"IHDR":
        raise ImageRefused(400, "PNG without an IHDR chunk first")
    if b"IEND\xaeB`\x82" not in body:  # the IEND chunk and its fixed CRC
        raise ImageRefused(400, "truncated PNG: the body ends before the IEND chunk")
    return width, height


_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(body: bytes):
    pos, size = 2, None
    while True:
        if _unpack("B", body, pos)[0] != 0xFF:
            raise ImageRefused(400, f"corrupt JPEG: no marker at byte {pos}")
        while _unpack("B", body, pos)[0] == 0xFF:  # fill bytes
            pos += 1
        marker = _unpack("B", body, pos)[0]
        pos += 1
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue
        if marker == 0xD9:
            raise ImageRefused(400, "corrupt JPEG: it ends before any image data")
        (length,) = _unpack(">H", body, pos)
        if length < 2:
            raise ImageRefused(400, f"corrupt JPEG: segment length {length} at byte {pos}")
        if marker in _SOF:
            height, width = _unpack(">HH", body, pos + 3)
            size = (width, height)
        if marker == 0xDA:  # start of scan: the entropy-coded data follows
            if size is None:
                raise ImageRefused(400, "corrupt JPEG: image data before any frame header")
            if body.find(b"\xff\xd9", pos + length) < 0:
                raise ImageRefused(400, "truncated JPEG: the body ends before the end-of-image marker")
            return size
        pos += length


def _bmp(body: bytes):
    (header,) = _unpack("<I", body, 14)
    if header == 12:
        return _unpack("<HH", body, 18)
    width, height = _unpack("<ii", body, 18)
    return width, abs(height)


def _gif(body: bytes):
    return _unpack("<HH", body, 6)


def _webp(body: bytes):
    chunk = body[12:16]
    if chunk == b"VP8 ":
        if body[23:26] != b"\x9d\x01\x2a":
            raise ImageRefused(400, "corrupt WebP: no VP8 start code")
        width, height = _unpack("<HH", body, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":
        if _unpack("B", body, 20)[0] != 0x2F:
            raise ImageRefused(400, "corrupt WebP: no VP8L signature")
        (bits,) = _unpack("<I", body, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w0, w1, w2, h0, h1, h2 = _unpack("6B", body, 24)
        return (w0 | w1 << 8 | w2 << 16) + 1, (h0 | h1 << 8 | h2 << 16) + 1
    raise ImageRefused(400, f"WebP with an unknown first chunk {chunk!r}")


def _tiff(body: bytes):
    order = "<" if body[:2] == b"II" else ">"
    (ifd,) = _unpack(order + "I", body, 4)
    (count,) = _unpack(order + "H", body, ifd)
    found = {}
    for i in range(count):
        tag, kind, n = _unpack(order + "HHI", body, ifd + 2 + 12 * i)
        if tag in (256, 257):
            value = _unpack(order + ("H" if kind == 3 else "I"), body, ifd + 2 + 12 * i + 8)[0]
            found[tag] = value
    if 256 not in found or 257 not in found:
        raise ImageRefused(400, "TIFF without its width and length in the first directory")
    return found[256], found[257]


_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n?)*(\S+)")


def _pnm(body: bytes):
    head = body[:4096]
    if head[:2] == b"P7":  # PAM: WIDTH and HEIGHT lines up to ENDHDR
        end = head.find(b"ENDHDR")
        width = re.search(rb"\bWIDTH\s+(\d+)", head[:end])
        height = re.search(rb"\bHEIGHT\s+(\d+)", head[:end])
        if end < 0 or not width or not height:
            raise ImageRefused(400, "PAM header without WIDTH, HEIGHT and ENDHDR")
        return int(width.group(1)), int(height.group(1))
    tokens, pos = [], 2
    while len(tokens) < 2:
        match = _PNM_TOKEN.match(head, pos)
        if not match or not match.group(1).isdigit():
            raise ImageRefused(400, "portable anymap header without its width and height")
        tokens.append(int(match.group(1)))
        pos = match.end()
    return tokens[0], tokens[1]


def _sun(body: bytes):
    return _unpack(">II", body, 4)


def _jp2(body: bytes):
    pos = body.find(b"ihdr", 12, 4096)
    if pos < 0:
        raise ImageRefused(400, "JPEG 2000 file without an image header box")
    height, width = _unpack(">II", body, pos + 4)
    return width, height


def _j2k(body: bytes):
    xsiz, ysiz, xo, yo = _unpack(">IIII", body, 8)
    return xsiz - xo, ysiz - yo


_HDR_SIZE = re.compile(rb"\n([-+])([XY]) (\d+) ([-+])([XY]) (\d+)\n")


def _hdr(body: bytes):
    match = _HDR_SIZE.search(body[:4096])
    if not match:
        raise ImageRefused(400, "Radiance HDR header without its resolution line")
    sizes = {match.group(2): int(match.group(3)), match.group(5): int(match.group(6))}
    if set(sizes) != {b"X", b"Y"}:
        raise ImageRefused(400, "Radiance HDR resolution line without X and Y")
    return sizes[b"X"], sizes[b"Y"]


_FORMATS = (  # (name, test on the first bytes, size reader)
    ("PNG", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n"), _png),
    ("JPEG", lambda b: b.startswith(b"\xff\xd8\xff"), _jpeg),
    ("BMP", lambda b: b.startswith(b"BM"), _bmp),
    ("GIF", lambda b: b[:6] in (b"GIF87a", b"GIF89a"), _gif),
    ("WebP", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP", _webp),
    ("TIFF", lambda b: b[:4] in (b"II*\x00", b"MM\x00*"), _tiff),
    ("PNM", lambda b: len(b) > 2 and b[:1] == b"P" and b[1:2] in b"1234567fF" and b[2:3].isspace(), _pnm),
    ("Sun raster", lambda b: b.startswith(b"\x59\xa6\x6a\x95"), _sun),
    ("JPEG 2000", lambda b: b.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n"), _jp2),
    ("JPEG 2000", lambda b: b.startswith(b"\xff\x4f\xff\x51"), _j2k),
    ("Radiance HDR", lambda b: b.startswith((b"#?RADIANCE", b"#?RGBE")), _hdr),
)


def image_size(body: bytes) -> tuple[str, int, int]:
    """``(format, width, height)`` from the header of ``body``; ImageRefused (400) when the format
    is unknown or its header is short, malformed or (PNG, JPEG) the body is cut before the end."""
    for name, test, read in _FORMATS:
        if test(body[:16]):
            try:
                width, height = read(body)
            except _Short:
                raise ImageRefused(400, f"truncated {name}: the body ends inside its header") from None
            if width <= 0 or height <= 0:
                raise ImageRefused(400, f"{name} header with a size of {width}x{height} pixels")
            return name, width, height
    raise ImageRefused(400, f"the body ({len(body)} bytes) is not a decodable image: no known format "
                            "(PNG, JPEG, BMP, GIF, WebP, TIFF, PNM, Sun raster, JPEG 2000, Radiance HDR)")


def decode_image(body: bytes, max_pixels: int):
    """The body decoded as an HxWx3 uint8 BGR array, once its header said it has at most
    ``max_pixels`` pixels (413 otherwise); ImageRefused with the reason when it cannot be."""
    import cv2
    import numpy as np

    name, width, height = image_size(body)
    if width * height > max_pixels:
        raise ImageRefused(413, f"the {name} image is {width}x{height} pixels, more than the limit of "
                                f"{max_pixels} pixels")
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    if image is None or not image.size:
        raise ImageRefused(400, f"the {name} image ({width}x{height}, {len(body)} bytes) could not be decoded: "
                                "corrupt or truncated")
    return image
