#!/usr/bin/env bash
# tools/quickstart.sh — the README's first command: set up, build, and run the main job
# (`calograd demo`: simulate showers, train a VAE, generate, evaluate; prints the report).
# Extra arguments go to `calograd demo` (see build/tools/calograd demo --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
exec ./build/tools/calograd demo "$@"
