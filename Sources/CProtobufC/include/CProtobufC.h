#ifndef CPROTOBUFC_H
#define CPROTOBUFC_H
#include <protobuf-c/protobuf-c.h>

/* protoc-c output for Protos/ (regenerate with `make protos`). */
#include "wrappers.pb-c.h"
#include "csi.pb-c.h"
#include "provider.pb-c.h"
#endif
