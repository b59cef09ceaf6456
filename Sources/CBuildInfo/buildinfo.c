#include "CBuildInfo.h"

// The stamp lives in the build directory, not in the source tree, so that a new commit
// never dirties a tracked file; the stamp script touches this file when it changes.
#if __has_include("../../.build/version.h")
#include "../../.build/version.h"
#endif

#ifndef SSCD_BUILD_VERSION
#define SSCD_BUILD_VERSION "unstamped"
#endif

const char *sscd_build_version(void) { return SSCD_BUILD_VERSION; }
