/* Logging: one line per event on stderr, "LEVEL component: message". */
#ifndef BH_LOG_H
#define BH_LOG_H

enum bh_log_level { BH_LOG_ERROR = 0, BH_LOG_WARN, BH_LOG_INFO, BH_LOG_DEBUG };

void bh_log_set_level(enum bh_log_level level);
/* JSON: one object a line ({"ts", "level", "component", "msg"}) instead of text. */
void bh_log_set_json(int json);
/* Parses "error", "warn", "info", "debug"; returns 0 or -EINVAL. */
int bh_log_level_parse(const char *name, enum bh_log_level *out);
void bh_log(enum bh_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define bh_error(comp, ...) bh_log(BH_LOG_ERROR, comp, __VA_ARGS__)
#define bh_warn(comp, ...)  bh_log(BH_LOG_WARN, comp, __VA_ARGS__)
#define bh_info(comp, ...)  bh_log(BH_LOG_INFO, comp, __VA_ARGS__)
#define bh_debug(comp, ...) bh_log(BH_LOG_DEBUG, comp, __VA_ARGS__)

#endif
