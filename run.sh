#!/usr/bin/env bash
# ./run.sh — builds Atlas and runs its main job. Until the switch exists this
# is a codec demo: a typical 0200 is packed in each built-in dialect and
# decoded back with isodump (PAN and secrets masked).
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure-deps.sh
atlas_ensure_deps
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" >/dev/null
if [ -x scripts/demo-codec.sh ]; then
  exec scripts/demo-codec.sh
fi
echo "built: $(ls build/bin | tr '\n' ' ')"
