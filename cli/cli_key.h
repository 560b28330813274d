/*
 * Copyright (C) Nexus authors
 *
 * nexusctl API keys: what other verbs need to know about them.
 */

#ifndef CLI_KEY_H
#define CLI_KEY_H

#include <nx_key.h>


/*
 * Parses the key given with --prefix: "<prefix>", "nx_<prefix>",
 * "nx_<prefix>_" or a whole key, in either case. Returns 0 and writes the
 * lowercase prefix (NX_KEY_PREFIX_LEN + 1 bytes), or prints why and
 * returns -1. An invalid value is not echoed: it may be a whole key.
 */
int cli_key_prefix_check(const char *arg, char *prefix);


#endif /* CLI_KEY_H */
