#!/usr/bin/env bash
# Install what is needed, build, and run the whole default test suite
# (everything but the soak and fuzz labels). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh "$@"
cd build
ctest -LE 'soak|fuzz' --output-on-failure -j2
