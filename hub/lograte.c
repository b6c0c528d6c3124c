#include "lograte.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

#include "log.h"

void
bh_lograte_init(struct bh_lograte *r, uint64_t window_ms)
{
    memset(r, 0, sizeof(*r));
    r->window_ms = window_ms;
}

static void
copy_cut(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    if (n >= size)
        n = size - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static int
same_key(const struct bh_lograte_slot *s, int level, const char *component, const char *key)
{
    return s->used && s->level == level &&
           strncmp(s->component, component, BH_LOGRATE_COMP - 1) == 0 &&
           strncmp(s->key, key, BH_LOGRATE_TEXT - 1) == 0;
}

int
bh_lograte_check(struct bh_lograte *r, int level, const char *component, const char *key,
                 const char *text, uint64_t now_ms, unsigned long *dropped)
{
    struct bh_lograte_slot *free_slot = NULL;
    if (key == NULL)
        key = text;
    *dropped = 0;
    for (size_t i = 0; i < BH_LOGRATE_SLOTS; i++) {
        struct bh_lograte_slot *s = &r->slots[i];
        if (!s->used) {
            if (free_slot == NULL)
                free_slot = s;
            continue;
        }
        if (!same_key(s, level, component, key)) {
            /* A key whose window is over with nothing left out is done with. */
            if (s->dropped == 0 && now_ms - s->since_ms >= r->window_ms) {
                s->used = 0;
                if (free_slot == NULL)
                    free_slot = s;
            }
            continue;
        }
        if (now_ms - s->since_ms < r->window_ms) {
            s->dropped++;
            copy_cut(s->text, sizeof(s->text), text);
            return 0;
        }
        *dropped = s->dropped;
        s->dropped = 0;
        s->since_ms = now_ms;
        copy_cut(s->text, sizeof(s->text), text);
        return 1;
    }
    if (free_slot != NULL) {
        free_slot->used = 1;
        free_slot->level = level;
        free_slot->since_ms = now_ms;
        free_slot->dropped = 0;
        copy_cut(free_slot->component, sizeof(free_slot->component), component);
        copy_cut(free_slot->key, sizeof(free_slot->key), key);
        copy_cut(free_slot->text, sizeof(free_slot->text), text);
    }
    return 1;
}

int64_t
bh_lograte_flush(struct bh_lograte *r, uint64_t now_ms, bh_lograte_emit emit, void *arg)
{
    int64_t next = -1;
    for (size_t i = 0; i < BH_LOGRATE_SLOTS; i++) {
        struct bh_lograte_slot *s = &r->slots[i];
        if (!s->used)
            continue;
        if (now_ms - s->since_ms >= r->window_ms) {
            if (s->dropped == 0) {
                s->used = 0;
                continue;
            }
            emit(s->level, s->component, s->text, s->dropped, arg);
            s->dropped = 0;
            s->since_ms = now_ms;
            continue;
        }
        if (s->dropped > 0) {
            int64_t due = (int64_t)(s->since_ms + r->window_ms - now_ms);
            if (next < 0 || due < next)
                next = due;
        }
    }
    return next;
}

void
bh_lograte_flush_all(struct bh_lograte *r, bh_lograte_emit emit, void *arg)
{
    for (size_t i = 0; i < BH_LOGRATE_SLOTS; i++) {
        struct bh_lograte_slot *s = &r->slots[i];
        if (s->used && s->dropped > 0)
            emit(s->level, s->component, s->text, s->dropped, arg);
        s->used = 0;
    }
}

int
bh_lograte_kafka_error_level(int err)
{
    switch ((rd_kafka_resp_err_t)err) {
    case RD_KAFKA_RESP_ERR__FATAL:
    case RD_KAFKA_RESP_ERR__AUTHENTICATION:
    case RD_KAFKA_RESP_ERR__SSL:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR__NOT_CONFIGURED:
    case RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE:
    case RD_KAFKA_RESP_ERR__FENCED:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM:
    case RD_KAFKA_RESP_ERR_ILLEGAL_SASL_STATE:
    case RD_KAFKA_RESP_ERR_SECURITY_DISABLED:
    case RD_KAFKA_RESP_ERR_UNSUPPORTED_VERSION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_PRODUCER_FENCED:
        return BH_LOG_ERROR;
    default:
        /* transport failures, all brokers down, timeouts, leader changes,
         * name resolution: the client retries, and recovers when the cluster does */
        return BH_LOG_WARN;
    }
}

int
bh_lograte_kafka_log_level(int syslog_level, const char *fac)
{
    if (fac != NULL && strcmp(fac, "FAIL") == 0)
        return BH_LOG_DEBUG;
    if (syslog_level <= 3)
        return BH_LOG_ERROR;
    if (syslog_level <= 5)
        return BH_LOG_WARN;
    return BH_LOG_DEBUG;
}

void
bh_lograte_kafka_key(const char *text, char *key, size_t size)
{
    size_t n = strlen(text);
    const char *after = NULL;
    for (const char *p = strstr(text, " (after "); p != NULL; p = strstr(p + 1, " (after "))
        after = p;
    if (after != NULL && n > 0 && text[n - 1] == ')' && after[8] >= '0' && after[8] <= '9')
        n = (size_t)(after - text);
    if (size == 0)
        return;
    if (n >= size)
        n = size - 1;
    memcpy(key, text, n);
    key[n] = '\0';
}
