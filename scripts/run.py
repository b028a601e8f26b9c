"""Run the whole service on this machine: Redis, one Celery worker and the web server.

Started by `make run`. It migrates the database, starts a private Redis unless
REDIS_URL is set, then a worker and Django's server on 127.0.0.1:$PORT (default 8000).
Ctrl-C stops all of them, and so does any one of them exiting.
"""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REDIS_URL_FILE = ROOT / "var" / "redis-url"
sys.path.insert(0, str(ROOT))

from captionsite.localredis import LocalRedis  # noqa: E402

logger = logging.getLogger("run")

STOP_TIMEOUT_SECONDS = 20


class Stop(Exception):
    pass


def on_signal(signum, frame):
    raise Stop(signal.Signals(signum).name)


def start(name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
    # Each child gets its own session, so Ctrl-C reaches only this script, which then
    # stops the children in order: web first, the worker, then Redis.
    process = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
    logger.info("Started %s (pid %s)", name, process.pid)
    return process


def stop(name: str, process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    logger.info("Stopping %s (pid %s)", name, process.pid)
    process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop within %s s; killing it", name, STOP_TIMEOUT_SECONDS)
        process.kill()
        process.wait()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s run: %(message)s")
    # SIGHUP arrives when the terminal closes, for example a dropped SSH session. The
    # children run in their own sessions and never get it, so it stops them like Ctrl-C.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, on_signal)

    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "captionsite.settings")
    env["PYTHONUNBUFFERED"] = "1"
    host = env.get("HOST", "127.0.0.1")
    port = env.get("PORT", "8000")
    python = sys.executable

    redis: LocalRedis | None = None
    children: list[tuple[str, subprocess.Popen]] = []
    try:
        # Database
        subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True)

        # Broker
        if env.get("REDIS_URL"):
            logger.info("Using the Redis at REDIS_URL")
        else:
            redis = LocalRedis(directory=ROOT / "var" / "redis").start()
            env["REDIS_URL"] = redis.url
            # manage.py commands run from another shell read it (see settings.REDIS_URL).
            REDIS_URL_FILE.write_text(redis.url + "\n")
            logger.info("Started a private Redis at %s", redis.url)

        # Worker and web server
        children.append(
            (
                "Celery worker",
                start(
                    "Celery worker",
                    [
                        python, "-m", "celery", "-A", "captionsite", "worker",
                        "--pool=prefork", "--concurrency=1", "--loglevel=INFO",
                        "--hostname", f"captionsite-{os.getpid()}@%h",
                        # The embedded beat schedules the sweep of lost jobs; a
                        # deployment with several workers runs one separate beat.
                        "--beat", "--schedule", str(ROOT / "var" / "celerybeat-schedule"),
                    ],
                    env,
                ),
            )
        )
        children.append(
            (
                "web server",
                start(
                    "web server",
                    [python, "manage.py", "runserver", f"{host}:{port}", "--noreload"],
                    env,
                ),
            )
        )

        base = f"http://{host}:{port}"
        print(
            f"\nCaptionsite is starting.\n"
            f"  Upload page: {base}/\n"
            f"  API:         {base}/api/v1/captions/ (documentation: {base}/api/docs/)\n"
            f"  Admin:       {base}/admin/ (create a user with: .venv/bin/python manage.py createsuperuser)\n"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )

        # Supervise: the first child to exit stops the rest.
        while True:
            for name, process in children:
                if process.poll() is not None:
                    logger.error("%s exited with code %s; stopping the others", name, process.returncode)
                    return process.returncode or 1
            time.sleep(0.5)
    except Stop as received:
        logger.info("Received %s; stopping", received)
        return 0
    except subprocess.CalledProcessError as error:
        logger.error("%s failed with code %s", " ".join(error.cmd[1:3]), error.returncode)
        return error.returncode
    finally:
        # Ignore further signals while stopping, so a second Ctrl-C cannot leave orphans.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        for name, process in reversed(children):
            stop(name, process)
        if redis is not None:
            REDIS_URL_FILE.unlink(missing_ok=True)
            redis.stop()
            logger.info("Stopped Redis")


if __name__ == "__main__":
    sys.exit(main())
