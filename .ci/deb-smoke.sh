#!/usr/bin/env bash
# Debian package smoke test (Debian 12, as root): build the .deb with
# cargo-deb (installed if missing), install it, check what it installed
# (binary, conffile, man pages, unit, system user) and that the packaged
# binary accepts the packaged configuration, then purge it.
set -euo pipefail
cd "$(dirname "$0")/.."

source .ci/lib.sh
ci_need_cargo deb-smoke

started=$SECONDS
if ! command -v cargo-deb >/dev/null 2>&1; then
    echo "deb-smoke: installing cargo-deb"
    cargo install cargo-deb --locked
fi
deb=$(cargo deb 2>&1 | tail -n 1)
test -f "$deb" || { echo "deb-smoke: no package built: $deb"; exit 1; }
echo "deb-smoke: built $deb after $((SECONDS - started)) s"
dpkg-deb --info "$deb" | sed -n 's/^ *\(Package\|Version\|Depends\|Section\):/deb-smoke:   &/p'

export DEBIAN_FRONTEND=noninteractive
case "$deb" in /*) ;; *) deb="./$deb" ;; esac
apt-get install -y "$deb" >/dev/null
# On a failure, leave no package behind; the failure itself is what the
# step reports, so a purge error then is not worth masking it (|| true).
trap 'apt-get purge -y greymilter >/dev/null 2>&1 || true' EXIT

# The packaged configuration reads the list installed beside it.
checked=$(/usr/bin/greymilter check-config --config /etc/greymilter/greylist.toml)
grep -q '^# list files: 1 read' <<<"$checked" || { echo "deb-smoke: large-senders not read:"; head -5 <<<"$checked"; exit 1; }
test -f /etc/greymilter/whitelist_recipients
test -f /usr/share/doc/greymilter/docs/configuration.md
/usr/bin/greymilter --version
getent passwd greymilter >/dev/null
test "$(stat -c %U:%G:%a /etc/greymilter/greylist.toml)" = "root:greymilter:640"
dpkg-query -W -f='${Conffiles}\n' greymilter | grep -q /etc/greymilter/greylist.toml
test -f /lib/systemd/system/greymilter.service
# From the package's file list: images that drop /usr/share/man (dpkg
# path-exclude) still list the pages the package ships.
files=$(dpkg -L greymilter)
for page in man8/greymilter.8 man8/greymilter-allow.8 man5/greylist.toml.5; do
    grep -q "^/usr/share/man/$page" <<<"$files" || { echo "deb-smoke: $page not in the package"; exit 1; }
done
# man(1) renders the page only where the image kept it on disk.
if command -v man >/dev/null 2>&1 && compgen -G "/usr/share/man/man5/greylist.toml.5*" >/dev/null; then
    man --warnings -Tutf8 greylist.toml 2>&1 >/dev/null | (! grep .)
fi

apt-get purge -y greymilter >/dev/null
trap - EXIT
test ! -e /usr/bin/greymilter
test ! -e /etc/greymilter/greylist.toml
echo "deb-smoke: installed, checked and purged in $((SECONDS - started)) s"
