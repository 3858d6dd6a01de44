"""`make install PREFIX=…` and `make dist` from the release build (Swift runtime and Foundation linked statically):
the installed `stagepass verify` works, a C program compiles and links against the installed library through
`pkg-config --cflags --libs stagepass-verify` and passes every conformance vector, and the dist tarball holds the
same tree.

With STAGEPASS_INSTALL_FROM=DIR (what `make test` sets: its debug build) the same checks run on that build's
products (`make install INSTALL_FROM=DIR`), whose Swift runtime stays dynamic: the layout, the installed
`stagepass verify`, the C program through pkg-config and the tarball are checked, and the runtime check asserts the
dynamic build keeps its runpath and says so. Without it (`make test-release`) the release build is installed and the
runtime must be linked in.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import HERE, REPO, VECTORS, vector_cases

pytestmark = pytest.mark.release


INSTALL_FROM = os.environ.get("STAGEPASS_INSTALL_FROM")


def make(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess:
    extra = [f"INSTALL_FROM={INSTALL_FROM}"] if INSTALL_FROM else []
    p = subprocess.run(["make", "--no-print-directory", "-C", str(REPO), *args, *extra], capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, f"make {' '.join(args)} → {p.returncode}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    return p


def needed(path: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return [line.split("[", 1)[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]


@pytest.fixture(scope="module")
def prefix(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("install") / "opt-stagepass"
    make("install", f"PREFIX={p}")
    return p


def test_install_lays_out_the_prefix(prefix):
    for rel in ("bin/stagepass", "lib/libstagepass_verify.so", "include/stagepass_verify.h",
                "lib/pkgconfig/stagepass-verify.pc", "share/doc/stagepass/RUNTIME-LIBRARIES"):
        assert (prefix / rel).is_file(), rel
    runtime = (prefix / "share/doc/stagepass/RUNTIME-LIBRARIES").read_text()
    if INSTALL_FROM:
        # A debug build: the Swift runtime is a shared library, found through the runpath the install kept.
        assert "libswiftCore.so" in needed(prefix / "bin/stagepass")
        assert "Swift runtime: dynamic" in runtime
    else:
        assert "Swift runtime: dynamic" not in runtime
        # The Swift runtime is linked in: neither file needs a Swift shared library or the toolchain's directory.
        for rel in ("bin/stagepass", "lib/libstagepass_verify.so"):
            libs = needed(prefix / rel)
            assert not [x for x in libs if "swift" in x.lower() or "Foundation" in x or "dispatch" in x], (rel, libs)
            dynamic = subprocess.run(["readelf", "-d", str(prefix / rel)], capture_output=True, text=True).stdout
            assert "/opt/swift" not in dynamic, f"{rel} still points into the toolchain"
    lib = subprocess.run(["readelf", "-d", str(prefix / "lib/libstagepass_verify.so")], capture_output=True,
                         text=True).stdout
    assert "Library soname: [libstagepass_verify.so]" in lib
    ldd = subprocess.run(["ldd", str(prefix / "bin/stagepass")], capture_output=True, text=True).stdout
    assert "not found" not in ldd, ldd


def test_installed_stagepass_verify(prefix, tmp_path):
    """The installed binary verifies a conformance vector's token (and refuses an expired one) on its own."""
    cases = {c["id"]: c for c in vector_cases()}
    good = cases["es256-valid"]
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(good["jwks"]))
    cfg = good["config"]
    base = [str(prefix / "bin/stagepass"), "verify", "--jwks", str(jwks), "--issuer", cfg["issuer"]]
    for a in cfg["audiences"]:
        base += ["--audience", a]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # nothing from the toolchain or the build tree
    ok = subprocess.run(base + ["--now", str(good["now"]), good["token"]], capture_output=True, text=True, env=env,
                        timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["iss"] == cfg["issuer"]
    late = subprocess.run(base + ["--now", str(good["now"] + 10 ** 6), good["token"]], capture_output=True,
                          text=True, env=env, timeout=60)
    assert late.returncode == 1 and json.loads(late.stderr)["error"] == "expired"
    guard_help = subprocess.run([str(prefix / "bin/stagepass"), "guard", "--help"], capture_output=True, text=True,
                                env=env, timeout=60)
    assert guard_help.returncode == 0 and "--trust-forwarded" in guard_help.stdout


def test_c_program_builds_through_pkg_config_and_passes_the_vectors(prefix, tmp_path):
    cc = os.environ.get("CC") or shutil.which("cc")
    assert cc, "no C compiler: `make deps` installs gcc"
    env = dict(os.environ, PKG_CONFIG_PATH=str(prefix / "lib/pkgconfig"))
    flags = subprocess.run(["pkg-config", "--cflags", "--libs", "stagepass-verify"], capture_output=True, text=True,
                           env=env, check=True).stdout.split()
    version = subprocess.run(["pkg-config", "--modversion", "stagepass-verify"], capture_output=True, text=True,
                             env=env, check=True).stdout.strip()
    assert version == (REPO / "VERSION").read_text().strip()
    assert f"-L{prefix}/lib" in [f.replace("//", "/") for f in flags] or any(
        Path(f[2:]).resolve() == (prefix / "lib").resolve() for f in flags if f.startswith("-L")), flags
    exe = tmp_path / "verify_vectors"
    # The vector runner reads the vectors file with jansson itself; the verifier comes only through pkg-config.
    cmd = [cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", str(exe), str(HERE / "c" / "verify_vectors.c"),
           *flags, "-ljansson"]
    build = subprocess.run(cmd, capture_output=True, text=True)
    assert build.returncode == 0, f"{' '.join(cmd)}\n{build.stderr}"
    assert "libstagepass_verify.so" in needed(exe)
    run_env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(prefix / "lib")}
    run = subprocess.run([str(exe), str(VECTORS)], capture_output=True, text=True, cwd=REPO, env=run_env,
                         timeout=300)
    total = len(vector_cases())
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert f"{total}/{total} cases passed, 0 failed" in run.stdout


def test_dist_tarball_holds_the_same_tree(prefix):
    version = (REPO / "VERSION").read_text().strip()
    arch = os.uname().machine
    out = make("dist").stdout
    tarball = REPO / "dist" / f"stagepass-{version}-linux-{arch}.tar.gz"
    assert tarball.is_file(), out
    top = f"stagepass-{version}-linux-{arch}"
    with tarfile.open(tarball) as t:
        names = set(t.getnames())
        for m in t.getmembers():
            assert m.uid == 0 and m.gid == 0
    installed = {str(p.relative_to(prefix)) for p in prefix.rglob("*") if p.is_file()}
    assert {f"{top}/{rel}" for rel in installed} <= names, sorted(names)
