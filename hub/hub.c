#include "hub.h"

#include <time.h>

int64_t
bh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
bh_adapter_stopped(struct bh_adapter *a)
{
    if (a->stopped)
        return;
    a->stopped = 1;
    struct bh_hub *hub = a->hub;
    if (--hub->running == 0 && hub->on_all_stopped != NULL)
        hub->on_all_stopped(hub);
}
