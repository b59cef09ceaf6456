#!/usr/bin/env bash
# Writes the version this build is (to .build/version.h, read by Sources/CBuildInfo) and
# prints it. A tagged commit is its tag; any other commit of a git checkout is
# "<VERSION file>-<commits since the tag or root>-g<hash>", with "-dirty" when tracked files
# differ; a tree without git (a release tarball) is the VERSION file alone.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(tr -d ' \n' < VERSION)
if version=$(git describe --tags --exact-match --dirty 2>/dev/null); then
  :
elif hash=$(git rev-parse --short=12 HEAD 2>/dev/null); then
  count=$(git rev-list --count HEAD)
  dirty=$(git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
  version="$base-$count-g$hash$dirty"
else
  version=$base
fi
mkdir -p .build
line="#define SSCD_BUILD_VERSION \"$version\""
if [ "$(cat .build/version.h 2>/dev/null)" != "$line" ]; then
  echo "$line" > .build/version.h
  touch Sources/CBuildInfo/buildinfo.c
fi
echo "$version"
