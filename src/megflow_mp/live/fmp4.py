"""Fragmented MP4 (ISO BMFF) for one H.264 video track, as Media Source Extensions take it.

:func:`init_segment` is ``ftyp`` + ``moov`` (an ``avc1`` sample entry built from the stream's SPS and
PPS, an empty sample table and ``mvex``); :func:`media_segment` is one ``moof`` + ``mdat`` holding ONE
access unit, so a viewer can be sent every frame the moment it is encoded. Samples are AVCC (each NAL
unit prefixed by its 4-byte length), without B-frames (decode time = presentation time). Timestamps
are in ``TIMESCALE`` units (90 kHz). Pure functions over bytes: no state, no I/O.
"""

from __future__ import annotations

import struct

TIMESCALE = 90_000
MATRIX = struct.pack(">9I", 0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000)
KEY_FLAGS = 0x02000000  # sample_depends_on = 2: depends on no other sample (a sync sample)
DELTA_FLAGS = 0x01010000  # sample_depends_on = 1, sample_is_non_sync_sample = 1


def box(kind: bytes, *parts: bytes) -> bytes:
    body = b"".join(parts)
    return struct.pack(">I", 8 + len(body)) + kind + body


def full_box(kind: bytes, version: int, flags: int, *parts: bytes) -> bytes:
    return box(kind, struct.pack(">I", (version << 24) | flags), *parts)


def codec_string(sps: bytes) -> str:
    """The RFC 6381 ``codecs`` value of the stream, e.g. ``avc1.42c01f`` (profile, constraints, level)."""
    return f"avc1.{sps[1]:02x}{sps[2]:02x}{sps[3]:02x}"


def _avcc(sps: bytes, pps: bytes) -> bytes:
    return box(b"avcC", bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]), struct.pack(">H", len(sps)), sps,
               b"\x01", struct.pack(">H", len(pps)), pps)


def _avc1(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    return box(b"avc1", bytes(6), struct.pack(">H", 1), bytes(16), struct.pack(">HH", width, height),
               struct.pack(">IIIH", 0x00480000, 0x00480000, 0, 1), bytes(32), struct.pack(">Hh", 0x18, -1),
               _avcc(sps, pps))


def init_segment(width: int, height: int, sps: bytes, pps: bytes) -> bytes:
    """``ftyp`` + ``moov`` of a fragmented file with one video track (id 1) of ``width`` x ``height``."""
    ftyp = box(b"ftyp", b"isom", struct.pack(">I", 0x200), b"isomiso6avc1mp41")
    mvhd = full_box(b"mvhd", 0, 0, struct.pack(">IIII", 0, 0, TIMESCALE, 0), struct.pack(">IH", 0x10000, 0x100),
                    bytes(10), MATRIX, bytes(24), struct.pack(">I", 2))
    tkhd = full_box(b"tkhd", 0, 3, struct.pack(">IIIII", 0, 0, 1, 0, 0), bytes(8), struct.pack(">hhhH", 0, 0, 0, 0),
                    MATRIX, struct.pack(">II", width << 16, height << 16))
    mdhd = full_box(b"mdhd", 0, 0, struct.pack(">IIIIHH", 0, 0, TIMESCALE, 0, 0x55C4, 0))
    hdlr = full_box(b"hdlr", 0, 0, struct.pack(">I", 0), b"vide", bytes(12), b"megflow-mp live\x00")
    vmhd = full_box(b"vmhd", 0, 1, bytes(8))
    dinf = box(b"dinf", full_box(b"dref", 0, 0, struct.pack(">I", 1), full_box(b"url ", 0, 1)))
    stsd = full_box(b"stsd", 0, 0, struct.pack(">I", 1), _avc1(width, height, sps, pps))
    empty = struct.pack(">I", 0)
    stbl = box(b"stbl", stsd, full_box(b"stts", 0, 0, empty), full_box(b"stsc", 0, 0, empty),
               full_box(b"stsz", 0, 0, empty, empty), full_box(b"stco", 0, 0, empty))
    trak = box(b"trak", tkhd, box(b"mdia", mdhd, hdlr, box(b"minf", vmhd, dinf, stbl)))
    mvex = box(b"mvex", full_box(b"trex", 0, 0, struct.pack(">IIIII", 1, 1, 0, 0, 0)))
    return ftyp + box(b"moov", mvhd, trak, mvex)


def media_segment(sequence: int, decode_time: int, duration: int, sample: bytes, keyframe: bool) -> bytes:
    """``moof`` + ``mdat`` of one access unit (AVCC bytes) at ``decode_time`` lasting ``duration``
    (both in TIMESCALE units); ``sequence`` counts fragments from 1."""
    flags = KEY_FLAGS if keyframe else DELTA_FLAGS

    def moof(data_offset: int) -> bytes:
        trun = full_box(b"trun", 0, 0x000701, struct.pack(">Ii", 1, data_offset),
                        struct.pack(">III", duration, len(sample), flags))
        traf = box(b"traf", full_box(b"tfhd", 0, 0x020000, struct.pack(">I", 1)),
                   full_box(b"tfdt", 1, 0, struct.pack(">Q", decode_time)), trun)
        return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", sequence)), traf)

    size = len(moof(0))
    return moof(size + 8) + struct.pack(">I", 8 + len(sample)) + b"mdat" + sample
