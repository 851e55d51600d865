"""`aloe serve` as users run it: a real process on loopback, used by `aloe generate --backend openai`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import aloe, assert_one_line_error

KEY = "cli-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(tiny_llama: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aloekit.cli", "serve", "--model", str(tiny_llama), "--port", str(port)],
        env={**os.environ, "HF_HUB_OFFLINE": "1", "ALOE_API_KEY": KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"aloe serve exited early: {process.stdout.read() if process.stdout else ''}")
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("aloe serve did not start within 90 s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_aloe_serve_reads_its_api_key_from_the_environment(served):
    assert httpx.get(served + "/v1/models", timeout=10).status_code == 401
    response = httpx.get(served + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}, timeout=10)
    assert response.status_code == 200


def test_aloe_generate_over_the_openai_backend_prints_what_the_hf_backend_prints(served, tiny_llama):
    remote = aloe(
        "generate", "--backend", "openai", "--base-url", served + "/v1", "--api-key", KEY, "--max-tokens", "8",
        "--json", "What is asthma?",
    )  # fmt: skip
    local = aloe("generate", "--model", str(tiny_llama), "--max-tokens", "8", "--json", "What is asthma?")
    assert remote.returncode == 0, remote.stderr
    assert local.returncode == 0, local.stderr
    assert json.loads(remote.stdout)["texts"] == json.loads(local.stdout)["texts"]
    assert json.loads(remote.stdout)["model"] == str(tiny_llama)  # the served name defaults to the reference


def test_a_wrong_key_from_the_cli_is_one_line_and_exit_code_2(served):
    result = aloe("generate", "--backend", "openai", "--base-url", served + "/v1", "--api-key", "nope", "hi")
    assert_one_line_error(result, "401")
