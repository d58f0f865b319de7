#!/usr/bin/env bash
# Builds milter-greylist 4.6.2 (the anchor) once, outside the project tree, the way
# benches/anchor-bench.sh does, and prints the binary's path. The import tests
# (tests/import_real.rs) run it to make a real milter-greylist dump. Cached by the
# tarball's checksum under $ANCHOR_DIR (default /var/tmp/greymilter-anchor): the same
# directory and layout as anchor-bench.sh, so either reuses the other's build.
# Needs .ci/install-anchor.sh's packages. The tarball: $ANCHOR_TARBALL, else
# ../shared/anchors/ beside the clone (read-only in CI: only read here).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
ANCHOR_TARBALL=${ANCHOR_TARBALL:-}
if [ -z "$ANCHOR_TARBALL" ]; then
    for t in "$ROOT/../shared/anchors/milter-greylist-4.6.2.tar.gz" /work/shared/anchors/milter-greylist-4.6.2.tar.gz; do
        [ -f "$t" ] && ANCHOR_TARBALL=$t && break
    done
fi
[ -n "$ANCHOR_TARBALL" ] && [ -f "$ANCHOR_TARBALL" ] \
    || { echo "build-anchor.sh: no milter-greylist tarball (set ANCHOR_TARBALL)" >&2; exit 1; }
ANCHOR_DIR=${ANCHOR_DIR:-/var/tmp/greymilter-anchor}
sum=$(sha256sum "$ANCHOR_TARBALL" | cut -c1-16)
dir=$ANCHOR_DIR/build-$sum
if [ ! -x "$dir/milter-greylist" ]; then
    bash "$ROOT/.ci/install-anchor.sh" >&2
    mkdir -p "$ANCHOR_DIR"
    # Another build may be under way (a bench, a parallel test): one at a time.
    exec 9>"$ANCHOR_DIR/build.lock"
    flock 9
    if [ ! -x "$dir/milter-greylist" ]; then
        echo "build-anchor.sh: building milter-greylist from $ANCHOR_TARBALL in $dir" >&2
        rm -rf "$dir.tmp"
        mkdir -p "$dir.tmp"
        tar xzf "$ANCHOR_TARBALL" -C "$dir.tmp" --strip-components=1
        if ! (cd "$dir.tmp" && ./configure --enable-postfix --with-libmilter=/usr && make -j2 milter-greylist) \
            >"$ANCHOR_DIR/build-$sum.log" 2>&1; then
            tail -20 "$ANCHOR_DIR/build-$sum.log" >&2
            echo "build-anchor.sh: milter-greylist did not build (log: $ANCHOR_DIR/build-$sum.log)" >&2
            exit 1
        fi
        rm -rf "$dir"
        mv "$dir.tmp" "$dir"
    fi
fi
echo "$dir/milter-greylist"
