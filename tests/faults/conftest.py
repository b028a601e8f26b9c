"""Fixtures for fault tests: worker processes to kill, a Redis to restart, a database
connection to cut, and a gunicorn server to flood.

Each test gets its own Redis (restartable, with an append-only file) and starts the
worker processes it needs, with settings passed through the environment, so killing
them never disturbs the session's stack fixtures.

`make chaos` sets CAPTIONSITE_CHAOS=1, which makes the same tests run their long
versions (more jobs, repeated kills and restarts) and print a summary of each.
"""

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import (
    REPO_ROOT,
    SHARED_DIR,
    WORKER_READY_TIMEOUT_SECONDS,
    WORKER_STOP_TIMEOUT_SECONDS,
    celery_broker_use,
    database_url,
)

CHAOS = os.environ.get("CAPTIONSITE_CHAOS") == "1"
# Upper bound for a whole group of jobs to finish, model loading included, on a busy
# shared CPU; reaching it fails the test as stuck. It is not a speed measure.
JOBS_DEADLINE_SECONDS = 1800 if CHAOS else 600
PHOTOS_DIR = SHARED_DIR / "datasets" / "flickr8k-900" / "images"
SUCCEEDED_LINE = re.compile(r"Caption job ([0-9a-f-]{36}) succeeded")


def scaled(normal: int, chaos: int) -> int:
    """Return the size of a test's workload: `chaos` under make chaos, else `normal`."""
    return chaos if CHAOS else normal


def photos(count: int) -> list[Path]:
    """Return `count` Flickr8k photos, cycling through the folder when it has fewer."""
    names = sorted(PHOTOS_DIR.glob("*.jpg"))
    return [names[i % len(names)] for i in range(count)]


def pids_of_children(parent: int) -> list[int]:
    """Return the ids of the processes whose parent is `parent`, read from /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return sorted(children)


def resident_kib(pid: int) -> int:
    """Return a process's resident set size in KiB, from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS line")


@dataclass
class Worker:
    name: str
    popen: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def pool_pids(self) -> list[int]:
        return pids_of_children(self.popen.pid)

    def kill_pool_process(self) -> int:
        """Kill -9 the pool process that runs tasks; the worker's main process lives on."""
        [pid] = self.pool_pids()
        os.kill(pid, signal.SIGKILL)
        return pid

    def kill(self) -> None:
        """Kill -9 the worker's main process and its pool process at once."""
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()


class TcpCutter:
    """A TCP proxy on 127.0.0.1 whose connections can be cut, to take a database away.

    While cut, it closes every open connection and refuses new ones, which is what
    clients see when the database host goes down.
    """

    def __init__(self, *, target_port: int):
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.cut_until = 0.0
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self, seconds: float) -> None:
        self.cut_until = time.monotonic() + seconds
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                connection.close()
            self.connections.clear()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            if time.monotonic() < self.cut_until:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, target), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, target):
                try:
                    end.close()
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()
        self.cut(0)


@dataclass
class FaultStack:
    """The processes of one fault test and the environment they share."""

    directory: Path
    database_url: str
    env: dict
    redis: object
    workers: list = field(default_factory=list)
    servers: list = field(default_factory=list)

    def start_worker(self, name: str, *, concurrency: int = 1, beat: bool = False, **settings) -> Worker:
        """Start a Celery worker with extra settings as environment variables."""
        env = {**self.env, **{key: str(value) for key, value in settings.items()}}
        log_path = self.directory / f"{name}.log"
        command = [
            sys.executable, "-m", "celery", "-A", "captionsite", "worker",
            "--pool=prefork", f"--concurrency={concurrency}", "--loglevel=INFO",
            "--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h",
        ]
        if beat:
            command += ["--beat", "--schedule", str(self.directory / f"{name}-beat-schedule")]
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        worker = Worker(name=name, popen=popen, log_path=log_path)
        self.workers.append(worker)
        wait_for(lambda: "ready." in worker.log_text(), WORKER_READY_TIMEOUT_SECONDS,
                 f"worker {name} to start", worker)
        return worker

    def start_gunicorn(self, *, workers: int = 2, threads: int = 4, **settings) -> str:
        """Start gunicorn on a free port and return its base URL."""
        from captionsite.localredis import free_port

        port = free_port()
        env = {**self.env, **{key: str(value) for key, value in settings.items()}}
        log_path = self.directory / "gunicorn.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [
                    sys.executable, "-m", "gunicorn", "captionsite.wsgi",
                    "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
                    "--threads", str(threads), "--timeout", "120",
                ],
                cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append(popen)

        def responds() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                return False

        wait_for(responds, 60, "gunicorn to listen", None)
        return f"http://127.0.0.1:{port}"

    def worker_logs(self) -> str:
        return "\n".join(worker.log_text() for worker in self.workers)

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()
        for server in self.servers:
            if server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
                except subprocess.TimeoutExpired:
                    os.killpg(server.pid, signal.SIGKILL)


def wait_for(condition, seconds: float, description: str, worker) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if worker is not None and worker.popen.poll() is not None:
            pytest.fail(f"{worker.name} exited with code {worker.popen.returncode}:\n{worker.log_text()[-5000:]}")
        if time.monotonic() > deadline:
            log = worker.log_text()[-5000:] if worker is not None else ""
            pytest.fail(f"Timed out after {seconds:g} s waiting for {description}.\n{log}")
        time.sleep(0.2)


@pytest.fixture
def fault_stack(transactional_db, django_db_serialized_rollback, tmp_path, media_root, model_store_root):
    """A private Redis and the environment for this test's workers and servers."""
    from captionsite.celery import app
    from captionsite.localredis import LocalRedis
    from django.db import connection

    redis = LocalRedis(directory=tmp_path / "redis", persist=True).start()
    previous_broker = app.conf.broker_url
    celery_broker_use(redis.url)
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "captionsite.settings",
            "DATABASE_URL": database_url(connection.settings_dict),
            "REDIS_URL": redis.url,
            "MEDIA_ROOT": str(media_root),
            "MODEL_STORE_ROOT": str(model_store_root),
            "CAPTION_DEVICE": os.environ.get("CAPTION_DEVICE", "cpu"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    stack = FaultStack(directory=tmp_path, database_url=env["DATABASE_URL"], env=env, redis=redis)
    yield stack
    stack.stop()
    celery_broker_use(previous_broker)
    redis.stop()


def jobs_create(paths: list[Path]) -> list:
    """Create a queued job per photo through the upload service; return their ids."""
    from captioning import services

    ids = []
    for path in paths:
        with open(path, "rb") as file:
            ids.append(services.job_create(upload=file, original_filename=path.name).id)
    return ids


def jobs_wait(ids: list, stack: FaultStack, seconds: float = JOBS_DEADLINE_SECONDS) -> None:
    """Wait until every job is succeeded or failed."""
    from captioning.models import CaptionJob

    def all_finished() -> bool:
        return not CaptionJob.objects.filter(id__in=ids).exclude(status__in=["succeeded", "failed"]).exists()

    deadline = time.monotonic() + seconds
    while not all_finished():
        if time.monotonic() > deadline:
            unfinished = CaptionJob.objects.filter(id__in=ids).exclude(status__in=["succeeded", "failed"])
            pytest.fail(
                f"{unfinished.count()} of {len(ids)} jobs unfinished after {seconds:g} s, e.g. "
                f"{[(str(job.id), job.status, job.attempts) for job in unfinished[:5]]}\n"
                f"{stack.worker_logs()[-6000:]}"
            )
        time.sleep(0.5)


@dataclass
class Outcome:
    accepted: int
    succeeded: int
    failed: collections.Counter  # failure message -> jobs
    lost: int  # accepted jobs that are neither succeeded nor failed
    duplicated: int  # jobs whose caption a worker stored more than once

    def summary(self, title: str) -> str:
        lines = [
            f"{title}: accepted {self.accepted}, succeeded {self.succeeded}, "
            f"failed {sum(self.failed.values())}, lost {self.lost}, duplicated {self.duplicated}"
        ]
        lines += [f"  failed {count}: {message}" for message, count in self.failed.most_common()]
        return "\n".join(lines)


def outcome(ids: list, stack: FaultStack) -> Outcome:
    """Count what became of the jobs, from the database and the workers' logs."""
    from captioning.models import CaptionJob

    jobs = CaptionJob.objects.filter(id__in=ids)
    stored = collections.Counter(SUCCEEDED_LINE.findall(stack.worker_logs()))
    expected_ids = {str(job_id) for job_id in ids}
    return Outcome(
        accepted=len(ids),
        succeeded=jobs.filter(status="succeeded").count(),
        failed=collections.Counter(jobs.filter(status="failed").values_list("error_message", flat=True)),
        lost=jobs.exclude(status__in=["succeeded", "failed"]).count() + len(expected_ids) - jobs.count(),
        duplicated=sum(1 for job_id, count in stored.items() if job_id in expected_ids and count > 1),
    )


# Each test's outcome and measurements, printed together at the end of the run.
SUMMARIES: list[tuple[str, Outcome, list[str]]] = []


def report(result: Outcome, title: str, *measurements: str) -> None:
    """Record a test's outcome for the end-of-run summary and check the two guarantees."""
    SUMMARIES.append((title, result, list(measurements)))
    assert result.lost == 0, result.summary(title)
    assert result.duplicated == 0, result.summary(title)


def pytest_terminal_summary(terminalreporter):
    if not SUMMARIES:
        return
    terminalreporter.section("fault tests: what became of the accepted jobs")
    for title, result, measurements in SUMMARIES:
        terminalreporter.write_line(result.summary(title))
        for line in measurements:
            terminalreporter.write_line(f"  {line}")
    totals = Outcome(
        accepted=sum(result.accepted for _, result, _ in SUMMARIES),
        succeeded=sum(result.succeeded for _, result, _ in SUMMARIES),
        failed=sum((result.failed for _, result, _ in SUMMARIES), collections.Counter()),
        lost=sum(result.lost for _, result, _ in SUMMARIES),
        duplicated=sum(result.duplicated for _, result, _ in SUMMARIES),
    )
    terminalreporter.write_line(totals.summary("all fault tests").splitlines()[0])
