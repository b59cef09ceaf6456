#ifndef CFUZZDRIVER_H
#define CFUZZDRIVER_H

#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer's driver (LLVMFuzzerRunDriver) with this process's arguments and `input`
/// as the target. SwiftPM gives every executable a Swift `main` of its own, so the targets
/// call the driver from there instead of linking libFuzzer's `main`.
int fuzz_run_driver(int argc, char **argv, int (*input)(const uint8_t *data, size_t size));

#endif
