"""A tiny RTSP server for tests (GStreamer's gst-rtsp-server), run by the SYSTEM interpreter:

    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --file clip.ts   # loops an MPEG-TS H.264 clip
    /usr/bin/python3 tests/support/rtsp_server.py --port 8554 --pattern ball   # videotestsrc, x264enc

Serves ``rtsp://HOST:PORT/test`` (TCP and UDP) and prints ``READY rtsp://...`` once listening;
each client gets a pipeline of its own unless ``--shared`` (see its help);
``--check`` only loads the elements (builds GStreamer's plugin registry) and prints ``OK``.
SIGTERM/SIGINT stop the main loop and exit 0. Needs: gir1.2-gst-rtsp-server-1.0 python3-gi
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly.
"""

import argparse
import ctypes
import os
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

ELEMENTS = ["multifilesrc", "tsdemux", "h264parse", "rtph264pay", "videotestsrc", "x264enc", "videoconvert"]


def launch_line(args) -> str:
    if args.file:
        loc = args.file.replace("\\", "\\\\").replace('"', '\\"')
        return (f'( multifilesrc location="{loc}" loop=true ! tsdemux ! h264parse '
                f"! rtph264pay name=pay0 pt=96 config-interval=1 )")
    return (f"( videotestsrc is-live=true pattern={args.pattern} "
            f"! video/x-raw,width={args.width},height={args.height},framerate={args.fps}/1 ! videoconvert "
            f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={args.fps} bframes=0 "
            f"! video/x-h264,profile=baseline ! rtph264pay name=pay0 pt=96 config-interval=1 )")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8554)
    ap.add_argument("--mount", default="/test")
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--file", help="MPEG-TS file with H.264 video, served in a loop")
    src.add_argument("--pattern", help="videotestsrc pattern (ball, smpte, ...)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--shared", action="store_true",
                    help="one pipeline for all clients (cheaper; gst-rtsp-server 1.22 may abort with "
                         "'gst_rtsp_media_get_rates: assertion failed' when clients connect at once)")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--die-with-parent", type=int, metavar="PID", help="SIGKILL this server when PID, its parent, dies")
    args = ap.parse_args()
    if args.die_with_parent:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != args.die_with_parent:    # the parent died before prctl
            return 1

    Gst.init(None)
    missing = [e for e in ELEMENTS if Gst.ElementFactory.find(e) is None]
    if missing:
        print(f"ERROR missing GStreamer elements: {' '.join(missing)}", flush=True)
        return 2
    if args.check:
        print("OK", flush=True)
        return 0
    if not args.file and not args.pattern:
        args.pattern = "ball"

    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    factory.set_shared(args.shared)
    server.get_mount_points().add_factory(args.mount, factory)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, loop.quit)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.host}:{args.port}", flush=True)
        return 1
    print(f"READY rtsp://{args.host}:{server.get_bound_port()}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
