#!/usr/bin/env bash
# tests/fuzz_cvox.sh — build the libFuzzer target tests/fuzz_cvox.c (clang, ASan + UBSan)
# and run it on a seed corpus of small valid files for SECONDS (default 300).
#
#   bash tests/fuzz_cvox.sh 600          (needs clang and libclang-rt-dev; build/ for seeds)
#
# Findings (crash-*, leak-*, timeout-*) land in build-fuzz/; the corpus grows in
# build-fuzz/corpus and is reused by the next run. The last lines give the executions and
# the coverage reached.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-300}
out=build-fuzz
mkdir -p "$out/corpus"
clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -D_GNU_SOURCE \
  -I. -Icore tests/fuzz_cvox.c io/cvox.c io/geometry.c core/error.c -lz -lm -o "$out/fuzz_cvox"

# seeds: small valid files, each as mode 0 (as is) and mode 1 (CRCs recomputed), plus a
# hand-made mode-2 payload (1 event, 1 hit)
seed() { for m in 0 1; do { printf "\\x0$m"; cat "$1"; } >"$out/corpus/seed-$m-$(basename "$1")"; done; }
if [ -x build/tools/calograd ]; then
  t=$(mktemp -d)
  build/tools/calograd simulate --geometry custom --grid 4,6,6 --events 40 -o "$t/grid.cvox" >/dev/null
  build/tools/calograd simulate --geometry custom --grid 2,3,5 --events 7 --theta 40:90 -o "$t/tilt.cvox" >/dev/null
  build/tools/calograd simulate --geometry lhcb --events 3 -o "$t/lhcb.cvox" >/dev/null
  build/tools/calograd simulate --geometry custom --grid 3,3,3 --events 0 -o "$t/empty.cvox" >/dev/null
  for f in "$t"/*.cvox; do seed "$f"; done
  rm -rf "$t"
fi
printf '\x02\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01\x00\x00\x00\x05\x00\x00\x80\x3f' >"$out/corpus/seed-2-payload"
printf 'kw1="CVCH"\nkw2="CVIX"\nkw3="CVND"\nkw4="\\x89CVOX\\x0d\\x0a\\x1a"\n' >"$out/cvox.dict"

cd "$out"
./fuzz_cvox corpus -dict=cvox.dict -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 \
  -timeout=10 -print_final_stats=1 2>&1 | tee fuzz.log | grep -E "^#[0-9]+ +(DONE|pulse)|ERROR|SUMMARY|stat::" || true
found=$(compgen -G "crash-*"; compgen -G "leak-*"; compgen -G "timeout-*"; compgen -G "oom-*") || true
if [ -n "$found" ]; then
  echo "fuzz_cvox: FINDINGS in $out: $found"
  exit 1
fi
echo "fuzz_cvox: nothing found in ${secs} s"
