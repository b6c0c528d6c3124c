/*
 * The service manager's notification protocol (systemd's sd_notify, without
 * libsystemd): one datagram of "KEY=VALUE" lines to the unix socket named by
 * NOTIFY_SOCKET ("@name": the abstract namespace). Nothing happens when the
 * variable is unset. blockhub says READY=1 once its listeners and the
 * producer are up, RELOADING=1 and READY=1 around a reload, STOPPING=1 at a
 * shutdown, and WATCHDOG=1 at half of WATCHDOG_USEC while the loop turns.
 */
#ifndef BH_NOTIFY_H
#define BH_NOTIFY_H

#include <stdint.h>

/* Send MSG; 0, or -errno (logged once). */
int bh_notify(const char *msg);
/* The watchdog interval the manager asks for, in ms (0: none). */
uint64_t bh_notify_watchdog_ms(void);

#endif
