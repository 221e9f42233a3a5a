#!/bin/bash
# `npm run bench:prog -- REV [PAIRS]`: what ubia_egress costs per run (BPF_PROG_TEST_RUN)
# in this tree's build against the BPF object of git revision REV, both load orders
# (bench/prog-run.c). Needs root and `npm run build` first. Used for the meter's cost of
# the quota filter (docs/performance.md, "Quota enforcement on users without a quota").
set -euo pipefail
rev=${1:?usage: npm run bench:prog -- REV [PAIRS]}
pairs=${2:-10}
root=$(cd "$(dirname "$0")/.." && pwd)
new=$root/build/native/ubia.bpf.o
[ -f "$new" ] || { echo "no $new: run npm run build first" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
git -C "$root" archive "$rev" bpf | tar -x -C "$tmp"
# the compiler flags the build uses (native/CMakeLists.txt), so both objects are alike
flags=$(sed -n 's/.*COMMAND ${CLANG} \(.*\) -I${BPF_DIR}$/\1/p' "$root/native/CMakeLists.txt")
[ -n "$flags" ] || { echo "cannot read the BPF compiler flags from native/CMakeLists.txt" >&2; exit 1; }
# (vmlinux.h is generated, not in git: this tree's)
# shellcheck disable=SC2086
clang $flags -I"$tmp/bpf" -I"$root/bpf" -c "$tmp/bpf/ubia.bpf.c" -o "$tmp/old.o"
cc -O2 -Wall -I"$root/bpf" "$root/bench/prog-run.c" -o "$tmp/prog-run" -lbpf
# any interface but loopback (1), so the per-interface count runs too; only the test's
# own maps see it
ifindex=2
run() { flock /tmp/ubia-bench.lock taskset -c "$(($(nproc) - 1))" "$tmp/prog-run" "$@" "$pairs" 1000000 "$ifindex"; }
echo "== $rev loaded first"
run "$tmp/old.o" "$new" | tail -1
echo "== this build loaded first (its figure is 'old' here)"
run "$new" "$tmp/old.o" | tail -1
