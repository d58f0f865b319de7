#!/usr/bin/env bash
# Install the real MTAs the end-to-end tests drive (tests/e2e_*.rs), on Debian 12, as root,
# without starting any system daemon. Idempotent; a re-run on a ready machine touches nothing
# and prints nothing.
#
#   postfix     private instances are built by the test harness (tests/support/e2e/postfix.rs)
#   miltertest  protocol-level tests
#   iproute2    ip(8): the Sendmail IPv6 scenario adds addresses to the loopback of a private
#               network namespace (tests/support/e2e/netns.rs); the host's network is not touched
#   Sendmail    sendmail-bin Conflicts: mail-transport-agent (it would remove postfix), so the
#               binary is unpacked with dpkg -x into $SENDMAIL_ROOT instead of being installed;
#               sendmail-cf + m4 build the private sendmail.cf, the libraries satisfy ldd.
#
# The harness finds Sendmail at $SENDMAIL_ROOT/usr/libexec/sendmail/sendmail (override with
# GREYMILTER_SENDMAIL_BIN).
set -euo pipefail

SENDMAIL_ROOT=${SENDMAIL_ROOT:-/opt/greymilter-test/sendmail}
SENDMAIL_BIN=$SENDMAIL_ROOT/usr/libexec/sendmail/sendmail

source "$(dirname "$0")/lib.sh"

PACKAGES=(postfix miltertest iproute2 sendmail-cf m4 libdb5.3 libldap-2.5-0 liblockfile1 libnsl2
          libsasl2-2 libssl3 libwrap0)

mapfile -t missing < <(ci_missing "${PACKAGES[@]}")
if [ "${#missing[@]}" -eq 0 ] && [ -x "$SENDMAIL_BIN" ]; then
    exit 0
fi
ci_need_root install-mtas.sh

# "No configuration": Debian writes no /etc/postfix/main.cf, so no system Postfix ever runs.
debconf-set-selections <<'DEBCONF'
postfix postfix/main_mailer_type select No configuration
postfix postfix/mailname string mx.example.test
DEBCONF

ci_install install-mtas.sh "${missing[@]}"

if [ ! -x "$SENDMAIL_BIN" ]; then
    tmp=$(mktemp -d)
    # apt-get download runs as _apt where possible; the directory must be writable for it.
    chmod 777 "$tmp"
    [ "${#missing[@]}" -gt 0 ] || apt-get -o DPkg::Lock::Timeout=300 update -q >/dev/null
    (cd "$tmp" && apt-get download -q sendmail-bin >/dev/null)
    mkdir -p "$SENDMAIL_ROOT"
    dpkg -x "$tmp"/sendmail-bin_*.deb "$SENDMAIL_ROOT"
    dpkg-deb -f "$tmp"/sendmail-bin_*.deb Version >"$SENDMAIL_ROOT/VERSION"
    rm -rf "$tmp"
    echo "install-mtas.sh: unpacked sendmail-bin $(cat "$SENDMAIL_ROOT/VERSION") into $SENDMAIL_ROOT"
fi

# Fail here, not in the tests, if a library is missing.
if ldd "$SENDMAIL_BIN" | grep -q 'not found'; then
    ldd "$SENDMAIL_BIN" >&2
    echo "install-mtas.sh: Sendmail has unresolved libraries" >&2
    exit 1
fi
test -f /usr/share/sendmail/cf/m4/cf.m4
