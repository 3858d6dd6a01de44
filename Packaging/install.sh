#!/usr/bin/env bash
# Installs a release build into a prefix (README.md, "Installing"): the `stagepass` binary, the C ABI library
# `libstagepass_verify.so` with its header `stagepass_verify.h`, and the pkg-config file `stagepass-verify.pc`.
#
#   Packaging/install.sh BIN_DIR DEST VERSION
#
# BIN_DIR: the release build's products (`swift build -c release -Xswiftc -static-stdlib --show-bin-path`);
# DEST: the directory that becomes the prefix (with DESTDIR already prepended). The pkg-config file locates the
# prefix from its own path (${pcfiledir}), so the tree can be moved or unpacked anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=$1
dest=$2
version=$3

[ -x "$bin_dir/stagepass" ] || { echo "no release stagepass in $bin_dir (run make release)" >&2; exit 2; }
[ -f "$bin_dir/libStagepassVerifyC.so" ] || { echo "no libStagepassVerifyC.so in $bin_dir (run make release)" >&2; exit 2; }

# A build with the Swift runtime linked in (make release) needs no runpath; any other (INSTALL_FROM=.build/debug)
# keeps the runpath to the toolchain's runtime and says so.
static=1
if readelf -d "$bin_dir/stagepass" | grep -q 'Shared library: \[libswiftCore.so\]'; then
    static=0
    echo "note: $bin_dir/stagepass links the Swift runtime dynamically: it runs only where the toolchain is" >&2
fi
install -d "$dest/bin" "$dest/lib/pkgconfig" "$dest/include" "$dest/share/doc/stagepass"
install -m 0755 "$bin_dir/stagepass" "$dest/bin/stagepass"
strip --strip-unneeded "$dest/bin/stagepass"
# The build tree's runpath names the toolchain's Swift runtime, which the static build does not use.
[ "$static" = 0 ] || patchelf --remove-rpath "$dest/bin/stagepass"
# The library is installed under its C name; its SONAME follows, and the build tree's runpath (the toolchain's
# Swift runtime, not needed with the runtime linked in statically) is removed.
install -m 0755 "$bin_dir/libStagepassVerifyC.so" "$dest/lib/libstagepass_verify.so"
strip --strip-unneeded "$dest/lib/libstagepass_verify.so"
[ "$static" = 0 ] || patchelf --remove-rpath "$dest/lib/libstagepass_verify.so"
patchelf --set-soname libstagepass_verify.so "$dest/lib/libstagepass_verify.so"
install -m 0644 Sources/StagepassVerifyC/include/stagepass_verify.h "$dest/include/stagepass_verify.h"
sed "s/@VERSION@/$version/" Packaging/stagepass-verify.pc.in > "$dest/lib/pkgconfig/stagepass-verify.pc"
chmod 0644 "$dest/lib/pkgconfig/stagepass-verify.pc"
install -m 0644 README.md "$dest/share/doc/stagepass/README.md"
# What the two files need at run time besides libc (from their ELF NEEDED entries).
{
    echo "stagepass $version: shared libraries needed at run time (ELF NEEDED)"
    [ "$static" = 1 ] || echo "Swift runtime: dynamic (not a make release build; needs the Swift toolchain)"
    for f in "$dest/bin/stagepass" "$dest/lib/libstagepass_verify.so"; do
        echo "${f#"$dest"/}: $(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"
    done
} > "$dest/share/doc/stagepass/RUNTIME-LIBRARIES"
echo "installed stagepass $version into $dest"
