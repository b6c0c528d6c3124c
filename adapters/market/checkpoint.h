/*
 * The market adapter's checkpoint: which file it is in and how far every row
 * is acknowledged, in order. A small text file, replaced atomically (written
 * to PATH.tmp, flushed to disk, renamed over PATH), so a crash leaves either
 * the old checkpoint or the new one:
 *
 *     blockhub-market-checkpoint 1
 *     dev=2049
 *     ino=1835010
 *     size=1048576
 *     offset=524288      bytes: resume reading here (just after a row)
 *     row=3120           data rows before offset
 *     line=3122          physical lines before offset
 *     file=scjg_20261127_0800.csv
 *
 * The file is named as blockhub shows it (bh_market_show_name: valid UTF-8,
 * no control characters), so the name stays on its line whatever the bytes.
 */
#ifndef BH_MARKET_CHECKPOINT_H
#define BH_MARKET_CHECKPOINT_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

struct bh_market_checkpoint {
    uint64_t dev, ino, size; /* the file's identity, with its name */
    uint64_t offset;
    int64_t row, line;
    char file[NAME_MAX * 4 + 1]; /* the name as shown: see spool.h */
};

/* The text above into BUF (SIZE bytes, NUL-terminated); returns its length. */
size_t bh_market_checkpoint_format(char *buf, size_t size, const struct bh_market_checkpoint *c);
/* The text above from BUF (LEN bytes, not NUL-terminated): 0 or -EINVAL. */
int bh_market_checkpoint_parse(const char *buf, size_t len, struct bh_market_checkpoint *c);
/* 0 or a negative errno. Blocking (open, write, fsync, rename): run it off the loop. */
int bh_market_checkpoint_write(const char *path, const struct bh_market_checkpoint *c);
/* 0, -ENOENT (no checkpoint) or -EINVAL (not a checkpoint). */
int bh_market_checkpoint_read(const char *path, struct bh_market_checkpoint *c);

#endif
