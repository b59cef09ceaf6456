#!/usr/bin/env bash
# Regenerates the protoc-c code for Protos/ into OUTDIR (.c files) and
# OUTDIR/include (.h files), laid out as a SwiftPM C target whose public
# headers live in include/. Output is byte-for-byte reproducible: protoc-c
# writes no timestamps, protos are passed by relative path, and the nested
# google/protobuf directory is flattened with its #include lines rewritten.
#
# Usage: scripts/gen-protos.sh OUTDIR   (make protos uses Sources/CProtobufC)
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$1/include"
out="$(cd "$1" && pwd)"

command -v protoc-c >/dev/null || { echo "protoc-c not found (apt-get install protobuf-c-compiler)" >&2; exit 1; }

# Relative proto paths keep the "Generated from:" comments free of local paths.
protos=(csi.proto provider.proto google/protobuf/wrappers.proto)

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

(cd "$root/Protos" && protoc-c --c_out="$work" -I . "${protos[@]}")

for proto in "${protos[@]}"; do
  base="${proto%.proto}"          # e.g. google/protobuf/wrappers
  flat="$(basename "$base")"      # e.g. wrappers
  # Generated files include each other by their path under Protos/; the
  # target has one flat include/ directory, so drop the directories.
  sed -e 's|#include "google/protobuf/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' \
    "$work/$base.pb-c.h" > "$out/include/$flat.pb-c.h"
  sed -e 's|#include "google/protobuf/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' \
    "$work/$base.pb-c.c" > "$out/$flat.pb-c.c"
  echo "generated $flat.pb-c.c include/$flat.pb-c.h"
done
