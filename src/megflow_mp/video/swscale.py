"""BGR conversion by libswscale straight into a caller's array (no intermediate frame, no copy).

PyAV's ``VideoReformatter`` always converts into a new frame it allocates, so a decoder that must
deliver its pictures in shared memory would convert and then copy every frame (6 MB at 1080p).
:class:`DirectScaler` calls ``sws_scale`` of the very libswscale PyAV links (named by the DT_NEEDED
entries of PyAV's reformatter extension, found in PyAV's ``av.libs``; never whichever FFmpeg copy
happens to be mapped: opencv-python ships another one) through ``ctypes``, with the source planes of a PyAV frame and the destination
array as pointers. The output is bit-identical to ``frame.to_ndarray(format="bgr24")``: the same
bilinear context, the frame's colour matrix (BT.601 when unspecified, BT.709, ...) and range
(limited, or full for ``yuvj*`` and full-range tagged frames) set on the context as PyAV sets them.

Contracts:

* :func:`library` returns the bound libraries, or ``None`` when they are not found, cannot be
  loaded, or report other versions than PyAV's (``av.library_versions``: an ABI mismatch would be a
  crash, so it is a fallback with one log line): callers then use PyAV's reformatter.
* A scaler belongs to one thread at a time; it keeps one context, remade only when the size, pixel
  format, colour matrix or range of the frames changes, and freed with the scaler. It runs on the
  calling thread, one slice thread, with the GIL released (ctypes), like PyAV's own call.
* :meth:`DirectScaler.convert` handles the planar software formats in :data:`FORMATS` (what
  software decoders give) at widths that are a multiple of 16 and, for 4:2:0, even heights (every
  common video size), and returns False for any other frame (hardware frames, nv12, palettes, odd
  sizes), writing nothing; the caller falls back. Outside those cases libswscale's legacy entry
  point either writes past the end of unpadded rows (PyAV pads its frames) or interpolates the last
  rows' chroma differently from PyAV's: the tests pin both.
  ``out`` must be a C-contiguous ``HxWx3 uint8`` array of the frame's size. A failing ``sws_scale``
  raises ``RuntimeError``.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import struct
from pathlib import Path

log = logging.getLogger(__name__)

FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"})
_HALF_HEIGHT = frozenset({"yuv420p", "yuvj420p"})  # chroma of half height: only even heights match PyAV
_BILINEAR = 2  # SWS_BILINEAR: PyAV's default interpolation
_CS_DEFAULT = 5  # SWS_CS_DEFAULT (BT.601): the destination matrix, as for any RGB output
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
_ONE = 1 << 16  # brightness 0, contrast and saturation 1.0 in swscale's 16.16 fixed point

_P, _I = ctypes.c_void_p, ctypes.c_int
_IP = ctypes.POINTER(_I)


def _needed(path: str) -> list[str]:
    """The DT_NEEDED sonames of the ELF shared object at ``path`` (64- or 32-bit, little-endian)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[5] != 1:
        raise OSError(f"{path}: not a little-endian ELF file")
    wide = data[4] == 2
    head = struct.unpack_from("<QQQIHHHHHH" if wide else "<IIIIHHHHHH", data, 24)
    shoff, shentsize, shnum = head[2], head[7], head[8]
    sections = []
    for i in range(shnum):
        fields = struct.unpack_from("<IIQQQQIIQQ" if wide else "<IIIIIIIIII", data, shoff + i * shentsize)
        sections.append((fields[1], fields[4], fields[5], fields[6]))  # type, offset, size, link
    names = []
    for kind, offset, size, link in sections:
        if kind != 6:  # SHT_DYNAMIC
            continue
        strtab = sections[link][1]
        entry = struct.Struct("<qQ" if wide else "<iI")
        for pos in range(offset, offset + size, entry.size):
            tag, value = entry.unpack_from(data, pos)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                names.append(data[strtab + value:data.index(b"\0", strtab + value)].decode())
    return names


def pyav_libraries() -> dict[str, str]:
    """``{"swscale": path or soname, "avutil": ...}``: the libraries PyAV's own reformatter links.

    Read from the DT_NEEDED entries of PyAV's ``av.video.reformatter`` extension, so the answer does
    not depend on which other FFmpeg copies (OpenCV's, a plugin's) this process has mapped. A name
    found in PyAV's bundled ``av.libs`` folder is returned as that file's path; otherwise (a PyAV
    built against the system's FFmpeg) as the soname, which the dynamic loader resolves the same way
    it did for PyAV. Raises ``OSError`` when the extension or an entry cannot be read.
    """
    import av.video.reformatter as reformatter

    ext = Path(reformatter.__file__).resolve()
    bundled = ext.parents[2] / "av.libs"
    out = {}
    for soname in _needed(str(ext)):
        for lib in ("swscale", "avutil"):
            if soname.startswith(f"lib{lib}.so") or soname.startswith(f"lib{lib}-"):
                out[lib] = str(bundled / soname) if (bundled / soname).is_file() else soname
    missing = {"swscale", "avutil"} - set(out)
    if missing:
        raise OSError(f"{ext.name} does not link lib{'/lib'.join(sorted(missing))}")
    return out


def _version(lib: ctypes.CDLL, name: str) -> tuple[int, int, int]:
    fn = getattr(lib, f"{name}_version")
    fn.restype, fn.argtypes = ctypes.c_uint, []
    v = fn()
    return v >> 16, (v >> 8) & 0xFF, v & 0xFF


class _Lib:
    """The ctypes bindings of one libswscale + libavutil pair, checked against PyAV's versions.

    Raises ``OSError`` when a library cannot be loaded, or is not the version PyAV reports
    (``av.library_versions``): calling into another FFmpeg's ABI could crash the process.
    """

    def __init__(self, swscale: str, avutil: str):
        import av

        sws, avu = ctypes.CDLL(swscale), ctypes.CDLL(avutil)
        for lib, name in ((sws, "swscale"), (avu, "avutil")):
            want, have = tuple(av.library_versions[f"lib{name}"]), _version(lib, name)
            if have != want:
                raise OSError(f"{lib._name} is lib{name} {'.'.join(map(str, have))}, "
                              f"PyAV uses {'.'.join(map(str, want))}")
        self.paths = (swscale, avutil)
        sws.sws_getContext.restype = _P
        sws.sws_getContext.argtypes = [_I, _I, _I, _I, _I, _I, _I, _P, _P, _P]
        sws.sws_scale.restype = _I
        sws.sws_scale.argtypes = [_P, ctypes.POINTER(_P), _IP, _I, _I, ctypes.POINTER(_P), _IP]
        sws.sws_freeContext.restype = None
        sws.sws_freeContext.argtypes = [_P]
        sws.sws_getCoefficients.restype = _IP
        sws.sws_getCoefficients.argtypes = [_I]
        sws.sws_setColorspaceDetails.restype = _I
        sws.sws_setColorspaceDetails.argtypes = [_P, _IP, _I, _IP, _I, _I, _I, _I]
        avu.av_get_pix_fmt.restype = _I
        avu.av_get_pix_fmt.argtypes = [ctypes.c_char_p]
        self.sws = sws
        self.bgr24 = avu.av_get_pix_fmt(b"bgr24")
        # yuvj* ("deprecated" in libswscale) are their yuv* layouts with full-range levels
        self.pix_fmt = {name: avu.av_get_pix_fmt(name.replace("yuvj", "yuv").encode()) for name in FORMATS}


def bind(swscale: str, avutil: str) -> _Lib | None:
    """The bindings of these two libraries, or None (with one INFO line saying why) when they cannot
    be loaded or are not PyAV's versions: callers then convert with PyAV's reformatter."""
    try:
        return _Lib(swscale, avutil)
    except (OSError, AttributeError) as exc:
        log.info("libswscale not usable (%s): frames are converted by PyAV, then copied", exc)
        return None


@functools.cache
def library() -> _Lib | None:
    """PyAV's own libswscale and libavutil, bound once per process (the binding is immutable and the
    libraries stay loaded for the life of the process anyway); None when not usable."""
    try:
        paths = pyav_libraries()
    except (OSError, ImportError) as exc:
        log.info("libswscale not usable (%s): frames are converted by PyAV, then copied", exc)
        return None
    return bind(paths["swscale"], paths["avutil"])


class DirectScaler:
    """One stream's conversion context on the bound libraries ``lib`` (see the module docstring)."""

    def __init__(self, lib: _Lib):
        self._lib = lib
        self._ctx = None
        self._key = None  # (width, height, pixel format, colour matrix, full range) of the context
        self._src, self._src_stride = (_P * 4)(), (_I * 4)()
        self._dst, self._dst_stride = (_P * 4)(), (_I * 4)()

    def convert(self, frame, out) -> bool:
        """Write ``frame`` as BGR into ``out``; False (nothing written) for a frame not handled."""
        name = frame.format.name
        h, w = frame.height, frame.width
        if name not in FORMATS or w % 16 or (h % 2 and name in _HALF_HEIGHT):
            return False
        full = 1 if frame.color_range == _FULL_RANGE or name.startswith("yuvj") else 0
        key = (w, h, name, frame.colorspace, full)
        if key != self._key:
            self._new_context(key)
        for i, plane in enumerate(frame.planes):
            self._src[i], self._src_stride[i] = plane.buffer_ptr, plane.line_size
        self._dst[0], self._dst_stride[0] = out.ctypes.data, out.strides[0]
        if self._lib.sws.sws_scale(self._ctx, self._src, self._src_stride, 0, h, self._dst, self._dst_stride) != h:
            raise RuntimeError(f"sws_scale failed on a {name} {w}x{h} frame")
        return True

    def _new_context(self, key) -> None:
        w, h, name, matrix, full = key
        lib, sws = self._lib, self._lib.sws
        self._free()
        ctx = sws.sws_getContext(w, h, lib.pix_fmt[name], w, h, lib.bgr24, _BILINEAR, None, None, None)
        if not ctx:
            raise RuntimeError(f"libswscale has no context for {name} {w}x{h} -> bgr24")
        self._ctx = ctx
        sws.sws_setColorspaceDetails(ctx, sws.sws_getCoefficients(matrix), full,
                                     sws.sws_getCoefficients(_CS_DEFAULT), 1, 0, _ONE, _ONE)
        self._key = key

    def _free(self) -> None:
        if self._ctx:
            self._lib.sws.sws_freeContext(self._ctx)
        self._ctx, self._key = None, None

    def __del__(self):
        self._free()
