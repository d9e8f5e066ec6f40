#!/usr/bin/env bash
# tests/run.sh — the README's second command: the whole test suite.
#  1. set up and build (tools/setup.sh), run every test (meson test) on the release build;
#  2. build again with AddressSanitizer + UndefinedBehaviorSanitizer and run the suite
#     except the tests marked slow (run once, above) and nosan (they cannot run instrumented).
# Tests exit 77 (skipped) where they cannot run here, e.g. the GPU tests without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
CG_TEST_DEPS=1 bash tools/setup.sh
meson test -C build --print-errorlogs --num-processes "$(nproc)"

if [ "${CG_SKIP_SANITIZERS:-0}" != 1 ]; then
  if [ ! -f build-asan/build.ninja ]; then
    meson setup build-asan --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false \
      -Dcuda=disabled >/dev/null
  fi
  ninja -C build-asan >/dev/null
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:detect_odr_violation=0 \
  UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes "$(nproc)" --no-suite slow --no-suite nosan
fi
echo "calograd tests: all passed"
