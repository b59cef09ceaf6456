#ifndef CYAML_H
#define CYAML_H
// libyaml (Debian libyaml-dev): the YAML parser under Sources/YAML.
#include <yaml.h>
#endif
