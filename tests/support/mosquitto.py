"""A real MQTT broker (``mosquitto``) for tests: a private instance on a free port, anonymous or with
one user, its config file generated.

    with Mosquitto() as broker:                     # broker.host, broker.port
        sub = broker.subscribe("megflow/#")         # a paho client collecting (topic, payload) in sub.got
        ...
        broker.stop(); broker.start()               # down for a while, up again on the same port

The Debian package ``mosquitto`` is installed on first use when the binary is missing (as
``make test`` does through the Makefile's DEBS). The broker dies with the process that started it.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from tests.support.rtsp import free_port

APT_INSTALL = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "mosquitto"]
_lock = threading.Lock()


def mosquitto_binary() -> str:
    with _lock:
        for found in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
            if found and os.path.exists(found):
                return found
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise RuntimeError(f"mosquitto not found; install it as root: {' '.join(APT_INSTALL)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], APT_INSTALL):
            subprocess.run(cmd, capture_output=True, env=env, timeout=900, check=True)
        return "/usr/sbin/mosquitto"


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Subscriber:
    """A paho client subscribed to ``topic`` (QoS 1), collecting ``(topic, payload text)``."""

    def __init__(self, host: str, port: int, topic: str, username=None, password=None):
        import paho.mqtt.client as mqtt

        self.got: list = []
        self.lock = threading.Lock()
        self.ready = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"test-sub-{os.getpid()}-{time.monotonic_ns()}", clean_session=False)
        if username:
            self.client.username_pw_set(username, password)

        def on_connect(client, userdata, flags, rc, props=None):
            client.subscribe(topic, qos=1)

        def on_subscribe(*args):
            self.ready.set()

        def on_message(client, userdata, msg):
            with self.lock:
                self.got.append((msg.topic, msg.payload.decode()))

        self.client.on_connect, self.client.on_subscribe, self.client.on_message = on_connect, on_subscribe, on_message
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect(host, port)
        self.client.loop_start()
        if not self.ready.wait(10):
            raise RuntimeError("subscription not confirmed")

    def payloads(self) -> list:
        with self.lock:
            return [p for _, p in self.got]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Mosquitto:
    def __init__(self, port: int | None = None, username: str | None = None, password: str | None = None):
        self.host, self.port = "127.0.0.1", port or free_port("127.0.0.1")
        self.username, self.password = username, password
        self._dir = tempfile.TemporaryDirectory(prefix="mosquitto-")
        self.conf = os.path.join(self._dir.name, "mosquitto.conf")
        lines = [f"listener {self.port} {self.host}", "persistence false", "log_dest stderr", "log_type error",
                 "max_queued_messages 100000"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to user mosquitto, which cannot read the private dir
        if username:
            pw = os.path.join(self._dir.name, "passwd")
            subprocess.run(["mosquitto_passwd", "-b", "-c", pw, username, password], check=True, capture_output=True)
            os.chmod(pw, 0o600)
            lines += ["allow_anonymous false", f"password_file {pw}"]
        else:
            lines.append("allow_anonymous true")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.proc = None
        self.subscribers: list = []
        self.start()

    def start(self, ready_timeout: float = 10.0) -> None:
        self.proc = subprocess.Popen([mosquitto_binary(), "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + ready_timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.proc.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def subscribe(self, topic: str) -> Subscriber:
        sub = Subscriber(self.host, self.port, topic, self.username, self.password)
        self.subscribers.append(sub)
        return sub

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for sub in self.subscribers:
            sub.close()
        self.stop()
        self._dir.cleanup()
