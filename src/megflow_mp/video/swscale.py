"""BGR conversion by libswscale straight into a caller's array (no intermediate frame, no copy).

PyAV's ``VideoReformatter`` always converts into a new frame it allocates, so a decoder that must
deliver its pictures in shared memory would convert and then copy every frame (6 MB at 1080p).
:class:`DirectScaler` calls ``sws_scale`` of the very libswscale PyAV has loaded (found in this
process's memory map) through ``ctypes``, with the source planes of a PyAV frame and the destination
array as pointers. The output is bit-identical to ``frame.to_ndarray(format="bgr24")``: the same
bilinear context, the frame's colour matrix (BT.601 when unspecified, BT.709, ...) and range
(limited, or full for ``yuvj*`` and full-range tagged frames) set on the context as PyAV sets them.

Contracts:

* :func:`load` returns a :class:`DirectScaler` factory, or ``None`` when the libraries are not found
  (another platform, a PyAV build without them): callers then use PyAV's reformatter.
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
import logging
import re
import threading

log = logging.getLogger(__name__)

FORMATS = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"})
_HALF_HEIGHT = frozenset({"yuv420p", "yuvj420p"})  # chroma of half height: only even heights match PyAV
_BILINEAR = 2  # SWS_BILINEAR: PyAV's default interpolation
_CS_DEFAULT = 5  # SWS_CS_DEFAULT (BT.601): the destination matrix, as for any RGB output
_FULL_RANGE = 2  # AVCOL_RANGE_JPEG
_ONE = 1 << 16  # brightness 0, contrast and saturation 1.0 in swscale's 16.16 fixed point

_P, _I = ctypes.c_void_p, ctypes.c_int
_IP = ctypes.POINTER(_I)


def _loaded(name: str) -> str | None:
    """Path of the shared library ``lib<name>`` this process has mapped (PyAV's own copy)."""
    try:
        with open("/proc/self/maps") as maps:
            found = re.search(rf"(/\S*/lib{name}[-.][^/\s]*\.so[^/\s]*)", maps.read())
    except OSError:
        return None
    return found.group(1) if found else None


class _Lib:
    """The ctypes bindings: libswscale and libavutil as PyAV loaded them."""

    def __init__(self, swscale: str, avutil: str):
        sws, avu = ctypes.CDLL(swscale), ctypes.CDLL(avutil)
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


_lib: _Lib | None = None
_tried = False
_load_lock = threading.Lock()  # streams start on several threads at once


def load():
    """:class:`DirectScaler` when PyAV's libswscale and libavutil are found and bound, else ``None``
    (looked for once per process)."""
    global _lib, _tried
    with _load_lock:
        if not _tried:
            _tried = True
            import av.video.reformatter  # noqa: F401 - maps PyAV's libswscale into this process

            paths = _loaded("swscale"), _loaded("avutil")
            try:
                if None in paths:
                    raise OSError("not mapped in this process")
                _lib = _Lib(*paths)
            except (OSError, AttributeError) as exc:
                log.info("libswscale not usable (%s): frames are converted by PyAV, then copied", exc)
    return DirectScaler if _lib is not None else None


class DirectScaler:
    """One stream's conversion context (see the module docstring)."""

    def __init__(self):
        self._lib = _lib
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
