/*
 * The configuration loader on the hub's real table (hub_conf.c, with every
 * adapter type's and the join's keys): the input is a YAML file; its first
 * lines, while they start with "#set ", are also given as --set overrides
 * (they stay YAML comments in the file).
 *
 * Oracle (besides no crash, leak or undefined behaviour): a config is bound
 * and freed, or refused with a message. The message may quote the file's
 * bytes and only goes to the log and stderr; set BH_FUZZ_STRICT_UTF8=1 to
 * also require it to be valid UTF-8.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "fuzz_common.h"
#include "hub.h"

#define MAX_SETS 8

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int strict = -1;
    if (strict < 0)
        strict = bh_fuzz_flag("BH_FUZZ_STRICT_UTF8");
    char *sets[MAX_SETS];
    size_t nsets = 0, at = 0;
    const char *text = (const char *)data;
    while (nsets < MAX_SETS && size - at > 5 && memcmp(text + at, "#set ", 5) == 0) {
        const char *nl = memchr(text + at, '\n', size - at);
        size_t end = nl != NULL ? (size_t)(nl - text) : size;
        size_t n = end - at - 5;
        sets[nsets] = malloc(n + 1);
        if (sets[nsets] == NULL)
            bh_fuzz_fail("out of memory");
        memcpy(sets[nsets], text + at + 5, n);
        sets[nsets][n] = '\0';
        nsets++;
        at = nl != NULL ? end + 1 : size;
    }

    struct bh_hub_conf conf;
    char err[1024];
    memset(&conf, 0, sizeof(conf));
    err[0] = '\0';
    int rc = bh_conf_load_string("fuzz.yaml", text, size, (const char *const *)sets, nsets,
                                 bh_hub_conf_keys, &conf, err, sizeof(err));
    if (rc == 0) {
        bh_conf_free(bh_hub_conf_keys, &conf);
    } else {
        if (err[0] == '\0')
            bh_fuzz_fail("a config refused (%d) without a message", rc);
        if (strict)
            bh_fuzz_check_utf8("the config's error message", err, strlen(err));
    }
    for (size_t i = 0; i < nsets; i++)
        free(sets[i]);
    return 0;
}
