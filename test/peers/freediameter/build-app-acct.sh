#!/usr/bin/env bash
# Builds freeDiameter's app_acct.fdx (the accounting server extension that stores ACRs
# into PostgreSQL) from Debian's freediameter source package: Debian's binary packages
# leave it out, and without it freeDiameter answers every ACR with 3002.
# Prints the path of the built extension. Built once, then cached outside the checkout:
#   ${UBIA_TEST_CACHE:-/var/cache/ubia-test}/freediameter/app_acct.fdx
# Needs (scripts/setup installs them): dpkg-dev bison flex gcc libfreediameter-dev libpq-dev.
set -euo pipefail
CACHE="${UBIA_TEST_CACHE:-/var/cache/ubia-test}/freediameter"
OUT="$CACHE/app_acct.fdx"
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi
log() { printf '[build-app-acct] %s\n' "$*" >&2; }
step="starting"
trap 'log "FAILED while $step (exit $?). To fix: run scripts/setup install (it installs dpkg-dev bison flex gcc libfreediameter-dev libpq-dev), make sure apt can reach deb.debian.org with a deb-src entry (see /etc/apt/sources.list.d/ubia-test-deb-src.sources), then rerun; or delete $CACHE to start over."' ERR

mkdir -p "$CACHE/src"
# test files that start freeDiameter at the same time on a fresh machine build it once
exec 9>"$CACHE/.lock"
flock -w 600 9
if [ -s "$OUT" ]; then echo "$OUT"; exit 0; fi

# apt-get source needs a deb-src entry; Debian 12 images ship only binary ones
# (debian.sources with "Types: deb").
step="adding a deb-src entry"
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  codename="$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")"
  log "no deb-src entry in /etc/apt: adding /etc/apt/sources.list.d/ubia-test-deb-src.sources ($codename)"
  cat > /etc/apt/sources.list.d/ubia-test-deb-src.sources <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  apt-get update -qq
fi

src="$(ls -d "$CACHE"/src/freediameter-*/ 2>/dev/null | head -1 || true)"
if [ -z "$src" ]; then
  step="fetching the freediameter source package (apt-get source freediameter)"
  log "$step"
  # a deb-src entry whose index was never fetched needs one apt-get update
  (cd "$CACHE/src" && { apt-get source -qq freediameter >&2 || { apt-get update -qq && apt-get source -qq freediameter >&2; }; })
  src="$(ls -d "$CACHE"/src/freediameter-*/ | head -1)"
fi

# The same steps as freeDiameter's CMake (BISON_FILE/FLEX_FILE with *_PREFIX_OUTPUTS,
# FD_ADD_EXTENSION), without configuring the whole tree.
d="${src%/}/extensions/app_acct"
b="$(mktemp -d)"
trap 'rm -rf "$b"' EXIT
step="building app_acct.fdx from $d in $b"
log "$step"
bison -Wno-deprecated -Wno-other --name-prefix=acct_conf --defines --output-file="$b/acct_conf.tab.c" "$d/acct_conf.y"
flex -Pacct_conf -o"$b/lex.acct_conf.c" "$d/acct_conf.l"
gcc -shared -fPIC -O2 -w -I"$d" -I"$b" -I/usr/include/postgresql \
  -o "$b/app_acct.fdx" \
  "$d/app_acct.c" "$d/acct_db.c" "$d/acct_records.c" "$b/lex.acct_conf.c" "$b/acct_conf.tab.c" \
  -lfdcore -lfdproto -lpq
# rename into place: a build killed half way never leaves a truncated cache entry
install -m 0644 "$b/app_acct.fdx" "$OUT.tmp"
mv -f "$OUT.tmp" "$OUT"
log "built $OUT"
echo "$OUT"
