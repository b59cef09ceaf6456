#ifndef CBUILDINFO_H
#define CBUILDINFO_H

/// The version this binary was built as: `scripts/stamp-version.sh` (run by every make
/// target that builds) writes it to `.build/version.h` from `git describe` or the
/// `VERSION` file; a build without that stamp reports "<VERSION file>-unstamped".
const char *sscd_build_version(void);

#endif
