"""Use cases, domain and repositories import nothing HTTP, not even indirectly: they raise
servicekit.errors, and servicekit.problems alone knows status codes. Checked in a fresh interpreter,
where nothing else has imported FastAPI yet (one for all services: an interpreter's start is slow)."""

from __future__ import annotations

import json
import subprocess
import sys

SERVICES = ("tenancy", "catalog", "orders")
PROBE = """
import importlib, json, sys
found = {}
for service in SERVICES:
    for part in ("domain", "usecases", "repository"):
        importlib.import_module(f"{service}.{part}")
    found[service] = sorted(m for m in sys.modules if m.split(".")[0] in ("fastapi", "starlette"))
print(json.dumps(found))
"""


def test_inner_layers_import_nothing_http() -> None:
    probe = f"SERVICES = {SERVICES!r}\n{PROBE}"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    assert json.loads(result.stdout) == {service: [] for service in SERVICES}
