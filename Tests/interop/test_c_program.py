"""Compiles Tests/interop/c/verify_vectors.c against libStagepassVerifyC.so and runs it over the vectors.

STAGEPASS_VERIFY_LIB names the shared library; its directory is used for -L and the rpath.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import HEADER_DIR, HERE, REPO, VECTORS, vector_cases, verify_lib_path


def test_c_program_passes_all_vectors(tmp_path):
    lib = verify_lib_path().resolve()
    cc = os.environ.get("CC") or shutil.which("cc")
    if not cc:
        pytest.fail("no C compiler: install build-essential (or set CC)", pytrace=False)
    libdir = str(lib.parent)
    exe = tmp_path / "verify_vectors"
    link = ["-lStagepassVerifyC"] if lib.name == "libStagepassVerifyC.so" else [str(lib)]
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(HERE / "c" / "verify_vectors.c"),
           "-I", str(HEADER_DIR), "-L", libdir, f"-Wl,-rpath,{libdir}", *link, "-ljansson"]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, f"compile failed: {' '.join(cmd)}\n{build.stderr}"

    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = libdir + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    run = subprocess.run([str(exe), str(VECTORS)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    total = len(vector_cases())
    assert run.returncode == 0, f"verify_vectors exited {run.returncode}\n{run.stdout[-6000:]}\n{run.stderr[-2000:]}"
    assert f"{total}/{total} cases passed, 0 failed" in run.stdout, run.stdout[-2000:]
