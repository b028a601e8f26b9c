"""Accepted but odd uploads through the whole stack: live server, Redis, a Celery worker.

The cases come from tests/captioning/test_bad_input_cases.py, which checks them up to
the queue. Here each one must end `succeeded` with a caption or `failed` with a
message, and the worker must survive all of them. Malformed HTTP that Django's test
client cannot send, a Content-Length longer than the body and a chunked body, goes
over a raw socket to the live server.
"""

import socket
import urllib.request
import uuid
from urllib.parse import urlsplit

import pytest

from tests.captioning.test_bad_input_cases import CONTENT_CASES, png
from tests.stack.test_api_stack import post_image, wait_until_finished

pytestmark = pytest.mark.stack

ACCEPTED_CASES = [case for case in CONTENT_CASES if case.error is None]


def test_odd_uploads_finish_and_worker_survives(stack_server, celery_worker_process, api_token, tmp_path):
    # Upload every case first, so the worker takes them one after another.
    job_urls = {}
    for case in ACCEPTED_CASES:
        path = tmp_path / f"{case.id}-{case.filename}"
        path.write_bytes(case.content())
        status, _, body = post_image(f"{stack_server}/api/v1/captions/", path, api_token)
        assert status == 202, (case.id, body)
        job_urls[case.id] = body["url"]

    jobs = {case_id: wait_until_finished(url, api_token, celery_worker_process) for case_id, url in job_urls.items()}

    for case_id, job in jobs.items():
        assert job["status"] in ("succeeded", "failed"), case_id
        if job["status"] == "failed":
            assert job["error_message"], case_id
    # Every accepted case is a readable image, so each one should get a caption.
    assert {case_id: job["status"] for case_id, job in jobs.items() if job["status"] != "succeeded"} == {}
    assert all(job["caption"] for job in jobs.values())
    assert celery_worker_process.popen.poll() is None, celery_worker_process.log_text()[-5000:]


def raw_request(base_url: str, head: str, body: bytes, *, close_write: bool) -> bytes:
    """Send one request over a socket and return the raw response, or b"" when none came."""
    address = urlsplit(base_url)
    with socket.create_connection((address.hostname, address.port), timeout=60) as connection:
        connection.sendall(head.encode() + body)
        if close_write:
            connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def multipart_body(boundary: str) -> bytes:
    return (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"photo.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + png() + f"\r\n--{boundary}--\r\n".encode()


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def test_lying_headers_get_no_5xx(stack_server, api_token):
    host = urlsplit(stack_server).netloc
    boundary = uuid.uuid4().hex
    body = multipart_body(boundary)
    common = (
        f"Host: {host}\r\nAuthorization: Token {api_token}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
    )

    # Content-Length promises 1,000 more bytes than the client sends before it stops.
    # The multipart body is complete, so the upload is accepted.
    longer = raw_request(
        stack_server,
        f"POST /api/v1/captions/ HTTP/1.1\r\n{common}Content-Length: {len(body) + 1000}\r\n\r\n",
        body,
        close_write=True,
    )
    # The client stops halfway through the file, so the file part never ends.
    cut_short = raw_request(
        stack_server,
        f"POST /api/v1/captions/ HTTP/1.1\r\n{common}Content-Length: {len(body)}\r\n\r\n",
        body[: len(body) // 2],
        close_write=True,
    )
    # A chunked body with no Content-Length.
    chunked_body = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    chunked = raw_request(
        stack_server,
        f"POST /api/v1/captions/ HTTP/1.1\r\n{common}Transfer-Encoding: chunked\r\n\r\n",
        chunked_body,
        close_write=False,
    )

    assert status_of(longer) == 202, longer[:500]
    assert status_of(cut_short) == 400, cut_short[:500]
    assert b'"image"' in cut_short
    assert status_of(chunked) == 411, chunked[:500]
    assert b"length_required" in chunked
    with urllib.request.urlopen(f"{stack_server}/api/v1/health/", timeout=60) as response:
        assert response.status in (200, 503)
