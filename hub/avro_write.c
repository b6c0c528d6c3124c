#include "avro_write.h"

#include <errno.h>

int
bh_avro_write_split(const void *framed, size_t len, const void *body, size_t n, uint8_t *header,
                    size_t cap, size_t *hlen)
{
    if (len < n || len - n > cap || memcmp((const uint8_t *)framed + (len - n), body, n) != 0)
        return -EPROTO;
    *hlen = len - n;
    memcpy(header, framed, *hlen);
    return 0;
}
