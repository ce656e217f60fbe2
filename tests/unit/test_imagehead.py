"""imagehead: format and size from the header of every format OpenCV decodes here, bombs refused
before OpenCV allocates anything, truncated and corrupt images refused with a reason."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap
import zlib

import cv2
import numpy as np
import pytest

from megflow_mp.imagehead import ImageRefused, decode_image, image_size

IMAGE = np.random.default_rng(0).integers(0, 255, (60, 80, 3)).astype(np.uint8)
EXTS = [".png", ".jpg", ".bmp", ".tiff", ".webp", ".ppm", ".pam", ".ras", ".jp2", ".hdr", ".pfm"]


def encoded(ext: str) -> bytes:
    image = IMAGE.astype(np.float32) / 255 if ext in (".hdr", ".pfm") else IMAGE
    return cv2.imencode(ext, image)[1].tobytes()


@pytest.mark.parametrize("ext", EXTS)
def test_size_is_read_from_the_header_of_each_format(ext):
    body = encoded(ext)
    assert image_size(body)[1:] == (80, 60)
    assert decode_image(body, 80 * 60).shape == (60, 80, 3)
    with pytest.raises(ImageRefused, match="80x60 pixels, more than the limit of 4799 pixels") as refused:
        decode_image(body, 80 * 60 - 1)
    assert refused.value.status == 413


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def bombs() -> dict[str, bytes]:
    """Small bodies whose headers claim a huge picture (30000x30000: under OpenCV's own limit of
    2**30 pixels, so OpenCV would allocate 2.7 GB for it), in each format."""
    w = h = 30000
    png = encoded(".png")
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    out = {"png": png[:8] + _png_chunk(b"IHDR", ihdr) + png[33:]}
    jpg = bytearray(encoded(".jpg"))
    sof = jpg.find(b"\xff\xc0")
    jpg[sof + 5: sof + 9] = struct.pack(">HH", h, w)
    out["jpeg"] = bytes(jpg)
    bmp = bytearray(encoded(".bmp"))
    bmp[18:26] = struct.pack("<ii", w, h)
    out["bmp"] = bytes(bmp)
    tif = bytearray(encoded(".tiff"))
    ifd = struct.unpack_from("<I", tif, 4)[0]
    for i in range(struct.unpack_from("<H", tif, ifd)[0]):
        tag, kind = struct.unpack_from("<HH", tif, ifd + 2 + 12 * i)
        if tag in (256, 257):
            struct.pack_into("<H" if kind == 3 else "<I", tif, ifd + 2 + 12 * i + 8, w)
    out["tiff"] = bytes(tif)
    webp = bytearray(cv2.imencode(".webp", IMAGE, [cv2.IMWRITE_WEBP_QUALITY, 101])[1].tobytes())  # VP8L
    bits = struct.unpack_from("<I", webp, 21)[0]
    struct.pack_into("<I", webp, 21, (bits & ~0xFFFFFFF) | 16383 | 16383 << 14)  # 16384x16384
    out["webp"] = bytes(webp)
    out["gif"] = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\xf7\x00\x00" + b"\x00" * 64
    out["ppm"] = b"P6\n30000 30000\n255\n" + b"\x00" * 1000
    ras = bytearray(encoded(".ras"))
    ras[4:12] = struct.pack(">II", w, h)
    out["sun"] = bytes(ras)
    return out


@pytest.mark.parametrize("name", sorted(bombs()))
def test_a_decompression_bomb_is_refused_413_before_opencv_allocates(name):
    body = bombs()[name]
    with pytest.raises(ImageRefused, match="more than the limit") as refused:
        decode_image(body, 50_000_000)
    assert refused.value.status == 413


def test_the_bombs_are_refused_within_a_memory_limit_opencv_alone_would_break():
    """In a process that may not map 1.5 GB, each bomb is refused; decoding one with OpenCV alone
    fails there (it tries to allocate), which shows the refusal comes first."""
    script = textwrap.dedent("""
        import pickle, resource, sys
        import cv2, numpy as np
        from megflow_mp.imagehead import ImageRefused, decode_image
        resource.setrlimit(resource.RLIMIT_AS, (1500 << 20, 1500 << 20))
        bombs = pickle.load(sys.stdin.buffer)
        for name, body in bombs.items():
            try:
                decode_image(body, 50_000_000)
            except ImageRefused as exc:
                assert exc.status == 413, (name, exc)
            else:
                raise SystemExit(f"{name}: decoded")
        try:
            cv2.imdecode(np.frombuffer(bombs["bmp"], np.uint8), cv2.IMREAD_COLOR)
        except (cv2.error, MemoryError):
            print("opencv alone: failed to allocate")
        print("ok")
    """)
    import pickle

    r = subprocess.run([sys.executable, "-c", script], input=pickle.dumps(bombs()), capture_output=True, timeout=120)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().split()[-1] == "ok"
    assert "opencv alone: failed to allocate" in r.stdout.decode(), r.stdout.decode()


@pytest.mark.parametrize("ext,words", [(".png", "truncated PNG"), (".jpg", "truncated JPEG"),
                                       (".bmp", "corrupt or truncated"), (".tiff", "truncated TIFF"),
                                       (".webp", "corrupt or truncated"), (".ppm", "corrupt or truncated")])
def test_a_truncated_image_is_refused_400_with_a_reason(ext, words):
    body = encoded(ext)
    with pytest.raises(ImageRefused, match=words) as refused:
        decode_image(body[: len(body) // 2], 50_000_000)
    assert refused.value.status == 400


@pytest.mark.parametrize("body,words", [
    (b"this is not an image", "not a decodable image: no known format"),
    (b"", "not a decodable image"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "truncated PNG: the body ends inside its header"),
    (b"\xff\xd8\xff\xe0\x00\x01", "corrupt JPEG: segment length 1"),
    (b"\xff\xd8\xff\xda\x00\x08" + b"\x00" * 20 + b"\xff\xd9", "image data before any frame header"),
    (b"BM" + b"\x00" * 12 + struct.pack("<Iii", 40, 0, 10), "size of 0x10 pixels"),
    (b"P6\n# a comment\n", "without its width and height"),
    (b"RIFF\x00\x00\x00\x00WEBPVP8Z", "unknown first chunk"),
    (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 0), "without its width and length"),
])
def test_malformed_headers_are_refused_400_never_an_other_exception(body, words):
    with pytest.raises(ImageRefused, match=words) as refused:
        decode_image(body, 50_000_000)
    assert refused.value.status == 400


def test_random_and_mutated_bodies_raise_only_image_refused():
    rng = np.random.default_rng(1)
    seeds = [encoded(ext) for ext in EXTS]
    for i in range(600):
        body = bytearray(seeds[i % len(seeds)][: int(rng.integers(0, 400))])
        for _ in range(int(rng.integers(1, 6))):
            if body:
                body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
        try:
            image_size(bytes(body))
        except ImageRefused:
            pass
