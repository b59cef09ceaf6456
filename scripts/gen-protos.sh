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

# protoc-c hands a `string` field over as a NUL-terminated C string, without its
# length: a value with a NUL byte in it would reach Swift cut short. So the C code is
# generated from a copy of Protos/ in which every string of the CSI and provider
# messages is `bytes`, which protoc-c hands over as (length, data). The wire encoding
# of the two is the same (length-delimited), so peers see no difference; the Swift
# bridge (Sources/CSIMessages/CBridge.swift) refuses a NUL byte or invalid UTF-8.
# A map may not have a bytes key, so each map<string, string> becomes what the
# protobuf spec defines it to be on the wire: a repeated entry message, here with
# bytes key (1) and value (2), named as protoc names a map's entry (FieldNameEntry),
# so the C names stay those of the map. Protos/ itself stays the upstream schema
# (the Python tests compile it).
mkdir -p "$work/in/google/protobuf" "$work/out"
cp "$root/Protos/google/protobuf/wrappers.proto" "$work/in/google/protobuf/"
for proto in csi.proto provider.proto; do
  perl -pe '
    s/^(\s*)((?:repeated|optional)\s+)?string(\s+\w+\s*=\s*\d+)/$1$2bytes$3/;
    s{^(\s*)map<string,\s*string>\s+(\w+)\s*=\s*(\d+);}{
      my ($i, $f, $n) = ($1, $2, $3); (my $e = $f) =~ s/(?:^|_)([a-z0-9])/\u$1/g;
      "${i}repeated ${e}Entry $f = $n; message ${e}Entry { bytes key = 1; bytes value = 2; }"}e;
  ' "$root/Protos/$proto" > "$work/in/$proto"
  if grep -nE '^\s*((repeated|optional)\s+)?string\s|map<' "$work/in/$proto" >&2; then
    echo "gen-protos: a string or map field above was not rewritten to bytes" >&2; exit 1
  fi
done

(cd "$work/in" && protoc-c --c_out="$work/out" -I . "${protos[@]}")

for proto in "${protos[@]}"; do
  base="${proto%.proto}"          # e.g. google/protobuf/wrappers
  flat="$(basename "$base")"      # e.g. wrappers
  # Generated files include each other by their path under Protos/; the
  # target has one flat include/ directory, so drop the directories.
  sed -e 's|#include "google/protobuf/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' \
    "$work/out/$base.pb-c.h" > "$out/include/$flat.pb-c.h"
  sed -e 's|#include "google/protobuf/\([a-z_]*\.pb-c\.h\)"|#include "\1"|' \
    "$work/out/$base.pb-c.c" > "$out/$flat.pb-c.c"
  echo "generated $flat.pb-c.c include/$flat.pb-c.h"
done
