"""Checks of the services a caption job needs: the database, the broker and a worker."""

import logging

from django.db import connection

logger = logging.getLogger(__name__)

# The broker connection and the worker ping give up after about this long, so a
# health request returns within a few seconds even when a service is down.
CHECK_TIMEOUT_SECONDS = 2.0


def database_check() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:
        logger.warning("Health check: the database failed: %s", error)
        return {"ok": False, "message": f"The database query failed: {type(error).__name__}."}
    return {"ok": True}


def broker_check() -> dict:
    from captionsite.celery import app

    try:
        with app.connection_for_write() as broker:
            broker.ensure_connection(max_retries=1, timeout=CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        logger.warning("Health check: the broker is unreachable: %s", error)
        return {"ok": False, "message": f"The broker is unreachable: {type(error).__name__}."}
    return {"ok": True}


def workers_check() -> dict:
    """Ping the Celery workers. The check passes when at least one replies."""
    from captionsite.celery import app

    try:
        replies = app.control.ping(timeout=CHECK_TIMEOUT_SECONDS / 2)
    except Exception as error:
        logger.warning("Health check: pinging the workers failed: %s", error)
        return {"ok": False, "workers": 0, "message": f"Pinging the workers failed: {type(error).__name__}."}
    if not replies:
        return {"ok": False, "workers": 0, "message": "No Celery worker replied to a ping."}
    return {"ok": True, "workers": len(replies)}


def checks_run() -> dict[str, dict]:
    """Run every check, skipping the worker ping when the broker is unreachable."""
    checks = {"database": database_check(), "broker": broker_check()}
    if checks["broker"]["ok"]:
        checks["workers"] = workers_check()
    else:
        checks["workers"] = {"ok": False, "workers": 0, "message": "Not checked, because the broker is unreachable."}
    return checks
