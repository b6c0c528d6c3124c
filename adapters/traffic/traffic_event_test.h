/* What only the tests of the traffic line parser use. */
#ifndef BH_TRAFFIC_EVENT_TEST_H
#define BH_TRAFFIC_EVENT_TEST_H

#include <stdbool.h>
#include <stddef.h>

#include "traffic_event.h"

/* For tests: with FAST false every line goes through yajl (the default is true). */
void bh_traffic_parser_set_fast(struct bh_traffic_parser *p, bool fast);
/* How many lines the flat-line path has read whole. */
size_t bh_traffic_parser_fast_lines(const struct bh_traffic_parser *p);

#endif
