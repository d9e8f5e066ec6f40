#!/usr/bin/env bash
# tools/quickstart.sh — the README's first command: set up, build, and run the main job
# (`calograd demo`: simulate showers, train a VAE, generate, evaluate; prints the report).
# Extra arguments go to `calograd demo` (see build/tools/calograd demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
# The CUDA backend is built only where a GPU can run it (nvcc without a GPU would only add
# build time before the demo); the test command builds it wherever nvcc is found.
if ! nvidia-smi -L >/dev/null 2>&1; then export CG_MESON_OPTIONS="-Dcuda=disabled"; fi
bash tools/setup.sh
exec ./build/tools/calograd demo "$@"
