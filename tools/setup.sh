#!/usr/bin/env bash
# tools/setup.sh — install what calograd needs (Debian 12; apt-get as root) and build it.
# Idempotent: installs only what is missing, reconfigures only when needed.
#   bash tools/setup.sh            -> build/ (release), build/tools/calograd
# CG_MESON_OPTIONS (e.g. "-Dcuda=disabled") is passed to meson when configuring;
# CG_TEST_DEPS=1 also installs what the tests use (Python with numpy, scipy, h5py).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for p in build-essential meson ninja-build pkg-config zlib1g-dev libhdf5-dev; do
  have_pkg "$p" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "calograd setup: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
    exit 2
  fi
  echo "calograd setup: installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# Python with numpy/scipy/h5py is used by tests as an independent reference (optional:
# those tests skip without it); only the test command asks for it (CG_TEST_DEPS=1).
# Prefer pip; fall back to Debian's packages.
if [ "${CG_TEST_DEPS:-0}" = 1 ] && command -v python3 >/dev/null && ! python3 -c 'import numpy, scipy, h5py' 2>/dev/null; then
  python3 -m pip install -q numpy scipy h5py 2>/dev/null \
    || { [ "$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy python3-scipy python3-h5py >/dev/null; } \
    || echo "calograd setup: numpy/scipy/h5py not installed; the tests that compare with them will skip" >&2
fi

# shellcheck disable=SC2086  # CG_MESON_OPTIONS is a list of options
if [ ! -f build/build.ninja ]; then
  meson setup build --buildtype=release ${CG_MESON_OPTIONS:-} >/dev/null
elif [ -n "${CG_MESON_OPTIONS:-}" ]; then
  meson configure build ${CG_MESON_OPTIONS} >/dev/null
fi
ninja -C build >/dev/null
echo "calograd setup: built build/tools/calograd"
