// libFuzzer's driver with this target's `fuzzOneInput` (see CFuzzDriver).
import CFuzzDriver
import Glibc

exit(fuzz_run_driver(CommandLine.argc, CommandLine.unsafeArgv, fuzzOneInput))
