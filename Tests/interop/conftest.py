"""Shared helpers for the interop tests (pytest; stdlib + cryptography + joserfc only).

Environment:
  STAGEPASS_VERIFY_LIB  path to libStagepassVerifyC.so   (test_conformance_c.py, test_c_program.py)
  STAGEPASS_BIN         path to the `stagepass` CLI       (test_joserfc_interop.py)

A missing variable is a test failure with a message saying what to set, never a skip: these tests are
the only proof that the C ABI and the CLI meet the contract in Specs/token-profile.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VECTORS = REPO / "Specs" / "vectors" / "conformance.json"
HEADER_DIR = REPO / "Sources" / "StagepassVerifyC" / "include"

sys.path.insert(0, str(HERE))

# The verdict codes in C ABI order: stagepass_result 1..24 (Specs/token-profile.md, "Error codes").
CODES = (
    "malformed", "wrong_type", "unsupported_critical_header", "forbidden_header", "unknown_key",
    "unsupported_algorithm", "bad_signature", "wrong_issuer", "wrong_audience", "missing_claim", "expired",
    "not_yet_valid", "issued_in_future", "lifetime_exceeded", "role_mismatch", "stage_mismatch",
    "pipeline_mismatch", "revoked", "status_unavailable",
    "dpop_required", "bad_dpop_proof", "dpop_key_mismatch", "dpop_replayed", "dpop_replay_cache_full",
)


def load_vectors() -> dict:
    with open(VECTORS, encoding="utf-8") as f:
        return json.load(f)


def vector_cases() -> list[dict]:
    return load_vectors()["cases"]


def required_path(var: str, what: str, hint: str) -> Path:
    """The existing file named by environment variable `var`, or a test failure that says how to fix it."""
    value = os.environ.get(var)
    if not value:
        pytest.fail(f"{var} is not set: point it at {what} ({hint}). These tests never skip.", pytrace=False)
    path = Path(value)
    if not path.is_file():
        pytest.fail(f"{var}={value} does not name an existing file ({what}).", pytrace=False)
    return path.resolve()  # the programs under test run in their own directories


def verify_lib_path() -> Path:
    return required_path(
        "STAGEPASS_VERIFY_LIB",
        "libStagepassVerifyC.so",
        "e.g. STAGEPASS_VERIFY_LIB=$(swift build --show-bin-path)/libStagepassVerifyC.so",
    )


def stagepass_bin_path() -> Path:
    return required_path(
        "STAGEPASS_BIN", "the stagepass CLI binary", "e.g. STAGEPASS_BIN=$(swift build --show-bin-path)/stagepass"
    )


def pytest_configure(config):
    # The fault suite: `make chaos` runs every `chaos` test; `make test` runs all but the `slow` ones (its smoke subset).
    config.addinivalue_line("markers", "chaos: a fault-suite test (slow clients, signals, storms, kills, full disks)")
    config.addinivalue_line("markers", "slow: a long fault-suite test, run by `make chaos` only")
    config.addinivalue_line("markers", "release: installs a build (`make test`: its debug build; `make test-release`: the release build)")


HANG_SECONDS = int(os.environ.get("STAGEPASS_HANG_SECONDS", "120"))

# What a `stagepass` process reads from its environment besides its flags: the STAGEPASS_* settings (key passphrase,
# master key, crash points), where the saved session lives, and the CI variables `stagepass request` falls back on.
CLI_ENVIRONMENT_INPUTS = ("HOME", "XDG_CONFIG_HOME", "GITHUB_ACTOR", "GITLAB_USER_LOGIN", "BUILD_USER_ID",
                          "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "GITHUB_ACTIONS",
                          "GITLAB_CI", "BUILDKITE")


def cli_environment(home: Path, extra: dict | None = None) -> dict:
    """The environment for a `stagepass` process under test: the caller's without anything the CLI reads (so a
    developer's shell or CI settings cannot change a result), HOME pointing into the test's own directory, then
    `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEPASS_") and k not in CLI_ENVIRONMENT_INPUTS}
    env["HOME"] = str(home)
    env.update(extra or {})
    return env


@pytest.fixture
def hang_guard(request):
    """Ends the whole run (exit 3) if one test blocks for HANG_SECONDS inside a C call, naming the test.

    A deadlock inside the library cannot be interrupted from Python, and CI would otherwise sit until its own limit.
    """
    def fire():
        msg = f"\nHANG: {request.node.nodeid} did not return within {HANG_SECONDS} s; aborting the run\n"
        try:
            capman = request.config.pluginmanager.getplugin("capturemanager")
            if capman is not None:
                capman.suspend_global_capture(in_=False)  # give fds 1 and 2 back to the terminal
        finally:
            os.write(2, msg.encode())
        os._exit(3)

    timer = threading.Timer(HANG_SECONDS, fire)
    timer.daemon = True
    timer.start()
    yield
    timer.cancel()
