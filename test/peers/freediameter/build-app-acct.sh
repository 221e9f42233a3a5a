#!/usr/bin/env bash
# Builds freeDiameter's app_acct.fdx (the accounting server extension that stores ACRs
# into PostgreSQL) from Debian's freediameter source package: Debian's binary packages
# leave it out, and without it freeDiameter answers every ACR with 3002.
# Prints the path of the built extension. Built once, then cached:
#   ${UBIA_TEST_CACHE:-/var/cache/ubia-test}/freediameter/app_acct.fdx
# Needs (scripts/setup installs them): dpkg-dev bison flex gcc libfreediameter-dev libpq-dev.
set -euo pipefail
CACHE="${UBIA_TEST_CACHE:-/var/cache/ubia-test}/freediameter"
OUT="$CACHE/app_acct.fdx"
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$CACHE/src"
log() { printf '[build-app-acct] %s\n' "$*" >&2; }

# apt-get source needs a deb-src entry; the machines ship only binary ones.
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding a deb-src entry for bookworm"
  cat > /etc/apt/sources.list.d/ubia-test-deb-src.sources <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi

src="$(ls -d "$CACHE"/src/freediameter-*/ 2>/dev/null | head -1 || true)"
if [ -z "$src" ]; then
  log "fetching the freediameter source package"
  # a deb-src entry whose index was never fetched needs one apt-get update
  (cd "$CACHE/src" && { apt-get source -qq freediameter >&2 || { apt-get update -qq && apt-get source -qq freediameter >&2; }; })
  src="$(ls -d "$CACHE"/src/freediameter-*/ | head -1)"
fi

# The same steps as freeDiameter's CMake (BISON_FILE/FLEX_FILE with *_PREFIX_OUTPUTS,
# FD_ADD_EXTENSION), without configuring the whole tree.
d="$src/extensions/app_acct"
b="$(mktemp -d)"
trap 'rm -rf "$b"' EXIT
log "building app_acct.fdx in $b"
bison -Wno-deprecated -Wno-other --name-prefix=acct_conf --defines --output-file="$b/acct_conf.tab.c" "$d/acct_conf.y"
flex -Pacct_conf -o"$b/lex.acct_conf.c" "$d/acct_conf.l"
gcc -shared -fPIC -O2 -w -I"$d" -I"$b" -I/usr/include/postgresql \
  -o "$b/app_acct.fdx" \
  "$d/app_acct.c" "$d/acct_db.c" "$d/acct_records.c" "$b/lex.acct_conf.c" "$b/acct_conf.tab.c" \
  -lfdcore -lfdproto -lpq
install -m 0644 "$b/app_acct.fdx" "$OUT"
echo "$OUT"
