// Empty: CYAML only exposes libyaml's header; SwiftPM needs one source file per C target.
#include "CYAML.h"
