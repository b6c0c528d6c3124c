/*
 * The market adapter's view of its spool directory: which *.csv entries are
 * there, since when each has been as it is (so that a file still being written
 * in place is not taken), and how a file name is shown.
 *
 * A file is settled once its identity, size and modification time have stayed
 * the same, as blockhub observed them, for settle_time: blockhub's own clock
 * measures it, so a file system whose clock differs from ours cannot make a
 * file look settled early.
 */
#ifndef BH_MARKET_SPOOL_H
#define BH_MARKET_SPOOL_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Room for any shown name (every byte of NAME_MAX escaped as \xNN) and its NUL. */
#define BH_MARKET_SHOWN_MAX (NAME_MAX * 4 + 1)

/*
 * NAME as blockhub shows it in records, dead letters, the checkpoint and log
 * lines: valid UTF-8 on one line. Valid characters are kept; a byte that is
 * not part of a valid UTF-8 sequence, and a control character, become the
 * four characters \xNN. DST holds SIZE bytes with the NUL; the copy ends on a
 * character (or escape) boundary if it is too small. Returns its length.
 */
size_t bh_market_show_name(char *dst, size_t size, const char *name);

enum bh_market_spool_kind {
    BH_MARKET_SPOOL_FILE,  /* a regular file */
    BH_MARKET_SPOOL_OTHER, /* a directory, a symbolic link, a FIFO, a socket, a device */
};

struct bh_market_spool_entry {
    char name[NAME_MAX + 1];
    enum bh_market_spool_kind kind;
    mode_t mode;
    uint64_t dev, ino, size;
    int64_t mtime_ns;
    uint64_t since; /* when it was first seen as it is (the caller's clock, ms) */
    int reported;   /* an entry that is not a file: its dead letter is out */
    int seen;       /* seen in the current listing */
};

struct bh_market_spool {
    struct bh_market_spool_entry *v;
    size_t n, cap;
};

/* A listing begins: every entry not noted again before bh_market_spool_end is forgotten. */
void bh_market_spool_begin(struct bh_market_spool *s);

/*
 * NAME is in the directory with status ST (from lstat) at time NOW. Returns its
 * entry, whose since is NOW if it is new or anything of it changed (for a file:
 * device, inode, size, modification time; for another entry: its type, device
 * and inode), or NULL when out of memory.
 */
struct bh_market_spool_entry *bh_market_spool_note(struct bh_market_spool *s, const char *name,
                                                   const struct stat *st, uint64_t now);

/* The listing is complete: forget the entries it did not note. */
void bh_market_spool_end(struct bh_market_spool *s);

/* The entry of NAME, or NULL. */
struct bh_market_spool_entry *bh_market_spool_find(struct bh_market_spool *s, const char *name);

/* Whether a file entry has been as it is for SETTLE ms at NOW (0 settles at once). */
int bh_market_spool_settled(const struct bh_market_spool_entry *e, uint64_t now, uint64_t settle);

void bh_market_spool_free(struct bh_market_spool *s);

#endif
