#!/usr/bin/env bash
# bench/gpu.sh — issue 4 on a GPU machine in one command, within 10 minutes:
#   1. build with CUDA (build-gpu/, release);
#   2. the GPU tests (test_cuda prints the math-mode accuracy table; backend_ops runs every
#      CUDA kernel against the CPU reference);
#   3. calograd's benchmark (bench/gpu_bench.c, with --check: one shower against the CPU);
#   4. PyTorch's benchmark on the same cases (bench/gpu_torch.py run);
#   5. the merged report: bench/results/gpu.json, and a table with the issue's goals.
# Results and logs go to bench/results/ and, when the variable OUT names a folder (the
# device tool's), are copied there after each step (so a run cut short still returns what
# it has). Each step has a time limit (together under 10 minutes); a failing or slow step is
# reported and the script goes on, then exits 1 if any step failed.
#
#   bash bench/gpu.sh            full run (fp32, tf32, bf16; 10 timed runs per case)
#   bash bench/gpu.sh --quick    fp32 and tf32, 5 timed runs (about half the time)
#   bash bench/gpu.sh --sanitize build, then the GPU tests under compute-sanitizer (memcheck,
#                                racecheck, synccheck, initcheck) instead of the benchmarks;
#                                log in bench/results/gpu_sanitize.log
#
# Needs: nvcc, a C compiler, ninja, meson (the `meson` command or Python's mesonbuild),
# zlib's headers, python3 with PyTorch. Nothing is downloaded. Without zlib's headers, put
# Debian's zlib1g-dev .deb in .deps/ (git-ignored through .git/info/exclude; `apt-get
# download zlib1g-dev` on a machine with the registry) and carry .deps along: it is
# unpacked and linked statically.
set -uo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
status=0
quick=0 sanitize=0
case "${1:-}" in
  --quick) quick=1 ;;
  --sanitize) sanitize=1 ;;
  "") ;;
  *) echo "usage: bash bench/gpu.sh [--quick | --sanitize]"; exit 2 ;;
esac
step() { echo; echo "=== [$(( $(date +%s) - t0 ))s] $*"; }
fail() { echo "!!! $*"; status=1; }
mkdir -p bench/results
R=bench/results
save() { if [ -n "${OUT:-}" ] && [ -d "$OUT" ]; then cp "$@" "$OUT"/ 2>/dev/null || true; fi; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || fail "nvidia-smi"
nvcc --version | tail -1
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())' \
  || fail "PyTorch not importable"

if command -v meson >/dev/null; then MESON=(meson)
elif python3 -c 'import mesonbuild' 2>/dev/null; then MESON=(python3 -m mesonbuild.mesonmain)
else echo "no meson (neither the command nor Python's mesonbuild)"; exit 2; fi

CCX=$(command -v "${CC:-cc}" || command -v gcc || command -v clang) || { echo "no C compiler"; exit 2; }
# zlib's headers, from a carried .deb when the image has none
if ! echo '#include <zlib.h>' | "$CCX" -E - >/dev/null 2>&1; then
  deb=$(ls .deps/zlib1g-dev*.deb 2>/dev/null | head -1)
  if [ -z "$deb" ]; then echo "zlib.h missing and no .deps/zlib1g-dev*.deb to unpack (see the header of this script)"; exit 2; fi
  mkdir -p .deps/root && dpkg -x "$deb" .deps/root
  rm -f .deps/root/usr/lib/x86_64-linux-gnu/libz.so   # dangling symlink: link libz.a
  export CFLAGS="${CFLAGS:-} -I$PWD/.deps/root/usr/include"
  export LDFLAGS="${LDFLAGS:-} -L$PWD/.deps/root/usr/lib/x86_64-linux-gnu"
  echo "using zlib from $deb"
fi

step "build (CUDA on)"
if [ ! -f build-gpu/build.ninja ]; then
  timeout 60 "${MESON[@]}" setup build-gpu --buildtype=release -Dcuda=enabled -Dhdf5=disabled || { echo "meson setup failed"; exit 2; }
fi
bstart=$(date +%s)
timeout 160 ninja -C build-gpu || { echo "build failed"; exit 2; }
echo "build: $(( $(date +%s) - bstart ))s"

if [ $sanitize = 1 ]; then
  # Each tool over test_cuda (every CUDA kernel family, allocator, streams, double
  # backward) and memcheck over the op-consistency test too. API errors are not reported:
  # test_cuda provokes an out-of-memory on purpose. The caching allocator keeps its blocks
  # to the end, so no leak check.
  S=$R/gpu_sanitize.log; : >$S
  command -v compute-sanitizer >/dev/null || { echo "no compute-sanitizer on the PATH" | tee -a $S; exit 2; }
  san() { # san TOOL LIMIT PROGRAM...
    local tool=$1 lim=$2; shift 2
    step "compute-sanitizer --tool $tool $*" | tee -a $S
    timeout "$lim" compute-sanitizer --tool "$tool" --error-exitcode 3 --report-api-errors no "$@" 2>&1 \
      | grep -v '^ok ' | tail -40 | tee -a $S
    local rc=${PIPESTATUS[0]}
    echo "--> $tool: exit $rc" | tee -a $S
    [ "$rc" = 0 ] || fail "compute-sanitizer $tool on $1 exited $rc"
    save $S
  }
  san memcheck 120 ./build-gpu/tests/test_cuda
  san racecheck 120 ./build-gpu/tests/test_cuda
  san synccheck 60 ./build-gpu/tests/test_cuda
  san initcheck 60 ./build-gpu/tests/test_cuda
  san memcheck 60 ./build-gpu/tests/test_backend_ops
  step "done, status $status" | tee -a $S
  save $S
  exit $status
fi

step "GPU tests"
timeout 60 ./build-gpu/tests/test_cuda 2>&1 | tee $R/gpu_tests.log
rc=${PIPESTATUS[0]}; [ "$rc" = 0 ] || fail "test_cuda exited $rc"
save $R/gpu_tests.log
# the tests that touch the device (the CPU-only suite is CI's business)
timeout 60 "${MESON[@]}" test -C build-gpu cuda backend_ops autograd models train core --num-processes "$(nproc)" \
  --print-errorlogs 2>&1 | tail -25 | tee -a $R/gpu_tests.log
[ "${PIPESTATUS[0]}" = 0 ] || fail "meson test"
save $R/gpu_tests.log

modes=fp32,tf32,bf16; reps=10
[ $quick = 1 ] && modes=fp32,tf32 && reps=5

step "calograd benchmark"
timeout 150 ./build-gpu/bench/gpu_bench --json $R/gpu_calograd.json --modes $modes --reps $reps --check --profile \
  2>&1 | tee $R/gpu_calograd.log
[ "${PIPESTATUS[0]}" = 0 ] || fail "gpu_bench"
save $R/gpu_calograd.log $R/gpu_calograd.json $R/gpu_calograd.json.tmp

step "PyTorch benchmark"
PYTHONUNBUFFERED=1 timeout 120 python3 bench/gpu_torch.py run --json $R/gpu_torch.json --modes $modes --reps $reps \
  2>&1 | tee $R/gpu_torch.log
[ "${PIPESTATUS[0]}" = 0 ] || fail "gpu_torch.py"
save $R/gpu_torch.log $R/gpu_torch.json

step "report"
if [ -f $R/gpu_calograd.json ] && [ -f $R/gpu_torch.json ]; then
  python3 bench/gpu_torch.py report --calograd $R/gpu_calograd.json --torch $R/gpu_torch.json --out $R/gpu.json \
    --command "bash bench/gpu.sh $*" 2>&1 | tee $R/gpu_report.txt || fail "report"
else
  fail "no report: a benchmark wrote no results"
fi

save $R/gpu.json $R/gpu_report.txt
step "done, status $status"
exit $status
