"""Property-based requests from the OpenAPI schema against the running stack.

The schemathesis command line generates requests for every operation in
/api/schema/, valid and invalid, and checks that no response is a 5xx and that every
response matches the schema that documents it.
"""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.stack

# Examples per operation (`--max-examples`). With 20 the run took about 30 s on two
# CPU cores.
EXAMPLES_PER_OPERATION = 20
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_api_conforms_to_its_schema(stack_server, api_token, settings, tmp_path):
    # Generated requests come fast from one key, so the rate would stop them early.
    settings.API_THROTTLE_RATES = {"anon": "100000/min", "user": "100000/min"}

    completed = subprocess.run(
        [
            str(SCHEMATHESIS), "run", f"{stack_server}/api/schema/",
            "--checks", "not_a_server_error,response_schema_conformance",
            "--header", f"Authorization: Token {api_token}",
            "--max-examples", str(EXAMPLES_PER_OPERATION),
            "--seed", "1",
            "--generation-database", "none",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )

    assert completed.returncode == 0, completed.stdout[-8000:] + completed.stderr[-2000:]
