/*
 * The lookup grid of the block map, and the lookups that use it:
 * bh_blockmap_locate (and so bh_blockmap_resolve) and bh_blockmap_grid_info.
 *
 * Point lookups go through a grid built at load time ("the lookup grid"
 * below): most points are answered by reading one cell; a point near a block
 * boundary is tested against the few blocks there, by a point-in-ring test of
 * our own that answers only when its answer is certainly GEOS's, and by GEOS
 * otherwise. On the 50,000-block benchmark map this takes a twelfth to a
 * fifteenth of the time of the plain lookup, which bh_blockmap_locate_slow
 * keeps for the tests and the benchmark: the candidates an STRtree (built on
 * its first call) finds, each tested by GEOSPreparedCovers_r.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "blockmap_int.h"

/*
 * About this many cells to a block of average area (but no more than 4 times
 * this many per block, for a map of scattered blocks) ...
 */
#ifndef GRID_CELLS_PER_BLOCK
#define GRID_CELLS_PER_BLOCK 16
#endif
/*
 * ... and at least this many: a small map gets a finer grid, of 64 kB, small
 * enough to stay in the caches the rest of the hub shares. (At 512 kB, on the
 * traffic path, a lookup was a cache miss: 7% of blockhub's CPU against 3% at
 * 64 kB, though alone in a loop the larger grid answers in 11 ns and this one
 * in 17; bench/RESULTS.md.)
 */
#define GRID_MIN_CELLS 8192
/* ... and at most this many (32 MB). */
#define GRID_MAX_CELLS (1u << 22)
/*
 * The ring test decides an orientation only if the computed determinant is
 * larger than this times the size of its products; see orientation().
 */
#define ORIENTATION_SAFE 1e-14

/*
 * bh_blockmap_locate answers from a grid of cells laid over the map's
 * bounding box, built at load time.
 *
 * Building. Blocks are taken in index order (ascending id). Each marks every
 * cell its boundary passes near: a segment marks, row by row, the columns of
 * its part within the row, the row and the columns widened by a margin. Then
 * its interior is scan-converted along the middle line of each row: a cell the
 * block did not mark and whose middle point the block covers holds no point of
 * the block's boundary, and is connected, so it lies wholly inside the block;
 * the block owns it, unless a block with a smaller index already does.
 *
 * The answer in a cell. Let O be the cell's owner, the smallest index covering
 * the whole cell. Any block that did not mark the cell covers all of it or
 * none of it, so it is O, or larger than O, or irrelevant. So the answer for a
 * point in the cell is the first of the blocks that marked the cell with an
 * index below O, in ascending order, that covers the point; else O; else
 * nothing. That is the smallest index covering the point: the rule, with a
 * point on an edge shared by two blocks going to the smaller id as before, and
 * with overlapping blocks (which a map may have) handled the same way. For the
 * department's tiling most cells are owned and have no candidates; a cell on
 * one edge has the two blocks that share it.
 *
 * The margin. A point is placed in a cell by a computation in doubles, so it
 * may lie outside the cell's exact rectangle by a rounding error (a few units
 * in the last place). Cells are marked for their rectangle widened by a
 * margin a million times that, so what a cell says holds for every point
 * looked up in it.
 *
 * A cell is 8 bytes (CELL_...): its owner, or the shape records of one
 * candidate and the owner, or of two candidates (the common case: an edge
 * shared by two blocks), or where its list is. A lookup in an owned cell reads
 * that one cell; on a boundary it reads the cell and the candidates' shape
 * records, which it prefetches together so that their cache misses overlap:
 * on a map far larger than the cache, misses are what a lookup costs.
 *
 * The test against a candidate. A shape record holds the block's rings as
 * they were given to GEOS (a header word: the block's index and its number of
 * rings, or 0 for a block GEOS should test; then for each ring a word with its
 * number of positions and the positions). rings_cover() tests the point
 * against them exactly or says it cannot, and then GEOS decides, through the
 * block's prepared geometry as bh_blockmap_locate_slow does: so the answer is
 * always GEOS's (see rings_cover and orientation).
 *
 * Memory: 8 bytes a cell, about 16 cells a block, the lists, and the shape
 * records (16 bytes a position). For the 50,000-block benchmark map that is
 * 7.8 MB of grid and 9.3 MB of records; for the 121-block world map, whose
 * grid has the minimum of 8,192 cells, 64 kB. See bh_blockmap_grid_info
 * and bench/RESULTS.md.
 */

/*
 * A cell while the grid is built: its owner (1 + index, or 0), and the blocks
 * whose boundary comes near it (its candidates), in ascending index: 1 + the
 * first (or 0), 1 + the second (or 0), or if there are more, BUILD_MORE and
 * where the last of them is in gb->more (which holds the second onwards, each
 * with where the one before it is); and 1 + the last, to see whether a block
 * has already noted the cell.
 */
struct build_cell {
    uint32_t owner, first, second, last;
};

#define BUILD_MORE 0x80000000u

struct build_more {
    uint32_t block;
    uint32_t before; /* 1 + where the one before is in gb->more, or 0 */
};

/* Where a block's boundary crosses the middle line of a row. */
struct grid_cross {
    double x;
    uint32_t row;
};

/* State while building the grid. */
struct grid_builder {
    struct bh_blockmap *map;
    struct build_cell *cells;
    struct build_more *more; /* the blocks past a cell's second, in lists from its last */
    size_t nmore, more_cap;
    uint32_t *list; /* one cell's candidates */
    size_t list_cap;
    struct grid_cross *cross; /* one block's */
    size_t ncross, cross_cap;
    double cell_w, cell_h;
    double margin_x, margin_y;
};

/* fmin and fmax without their NaN rules (no NaN gets here), which gcc does not inline. */
static inline double
min2(double a, double b)
{
    return a < b ? a : b;
}

static inline double
max2(double a, double b)
{
    return a > b ? a : b;
}

static inline uint32_t
grid_col(const struct bh_blockmap *map, double x)
{
    double t = (x - map->min_lon) * map->cells_per_lon;

    if (!(t > 0))
        return 0;
    if (t >= (double)map->grid_cols)
        return map->grid_cols - 1;
    return (uint32_t)t;
}

static inline uint32_t
grid_row(const struct bh_blockmap *map, double y)
{
    double t = (y - map->min_lat) * map->cells_per_lat;

    if (!(t > 0))
        return 0;
    if (t >= (double)map->grid_rows)
        return map->grid_rows - 1;
    return (uint32_t)t;
}

/*
 * Chooses the grid's size: GRID_CELLS_PER_BLOCK cells to a block of average
 * area (the area of every ring, over the block count), within the bounds.
 */
static void
grid_size(struct bh_blockmap *map)
{
    double width = map->max_lon - map->min_lon;
    double height = map->max_lat - map->min_lat;
    double most = (double)GRID_CELLS_PER_BLOCK * 4 * (double)map->count;
    double area = 0;
    double cells, side;

    for (size_t i = 0; i < map->count; i++) {
        const union bh__word *w = &map->shapes[map->blocks[i].shape + 1];

        for (uint32_t k = 0; k < map->blocks[i].nrings; k++) {
            const union bh__word *p = w + 1;
            uint32_t n = w->u[0];
            double twice = 0;

            /* The shoelace formula, about the first position to keep the products small. */
            for (uint32_t j = 1; j + 1 < n; j++)
                twice += (p[2 * j].d - p[0].d) * (p[2 * j + 3].d - p[1].d) -
                         (p[2 * j + 2].d - p[0].d) * (p[2 * j + 1].d - p[1].d);
            area += fabs(twice) / 2;
            w = p + 2 * n;
        }
    }
    cells = area > 0 ? width * height / (area / (double)map->count) * GRID_CELLS_PER_BLOCK : 0;
    if (cells > most)
        cells = most;
    if (cells > GRID_MAX_CELLS)
        cells = GRID_MAX_CELLS;
    if (!(cells >= GRID_MIN_CELLS))
        cells = GRID_MIN_CELLS;
    side = sqrt(width * height / cells);
    map->grid_cols = side > 0 && width / side < GRID_MAX_CELLS ? (uint32_t)ceil(width / side) : 1;
    map->grid_rows = side > 0 && height / side < GRID_MAX_CELLS ? (uint32_t)ceil(height / side) : 1;
    if (map->grid_cols < 1)
        map->grid_cols = 1;
    if (map->grid_rows < 1)
        map->grid_rows = 1;
    while ((uint64_t)map->grid_cols * map->grid_rows > GRID_MAX_CELLS) {
        if (map->grid_cols >= map->grid_rows)
            map->grid_cols = (map->grid_cols + 1) / 2;
        else
            map->grid_rows = (map->grid_rows + 1) / 2;
    }
    map->cells_per_lon = width > 0 ? map->grid_cols / width : 0;
    map->cells_per_lat = height > 0 ? map->grid_rows / height : 0;
}

/* Notes that the boundary of block INDEX comes near CELL. */
static inline int
grid_touch(struct bh__loader *ld, struct grid_builder *gb, uint32_t index, uint32_t cell)
{
    struct build_cell *c = &gb->cells[cell];
    int rc = 0;

    if (c->last == index + 1)
        goto out;
    c->last = index + 1;
    if (c->first == 0) {
        c->first = index + 1;
        goto out;
    }
    if (c->second == 0) {
        c->second = index + 1;
        goto out;
    }
    /* A third: the second moves to gb->more too. */
    if (gb->more_cap - gb->nmore < 2) {
        size_t cap = gb->more_cap ? gb->more_cap * 2 : 4096;
        struct build_more *more = NULL;

        if (cap < BUILD_MORE)
            more = realloc(gb->more, cap * sizeof(*more));
        if (!more) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
        gb->more = more;
        gb->more_cap = cap;
    }
    if (!(c->second & BUILD_MORE)) {
        gb->more[gb->nmore].block = c->second - 1;
        gb->more[gb->nmore].before = 0;
        c->second = BUILD_MORE | (uint32_t)gb->nmore++;
    }
    gb->more[gb->nmore].block = index;
    gb->more[gb->nmore].before = (c->second & ~BUILD_MORE) + 1;
    c->second = BUILD_MORE | (uint32_t)gb->nmore++;
out:
    return rc;
}

/*
 * Notes every cell that the segment (ax, ay)-(bx, by) of block INDEX passes
 * within the margin of: row by row, the part of the segment within the row
 * (widened by the margin), then the columns of that part (widened again).
 * Also notes where it crosses the middle line of each row, if it does (an
 * edge holds its lower end, so a ring crosses a line an even number of times).
 */
static int
grid_mark_segment(struct bh__loader *ld, struct grid_builder *gb, uint32_t index, double ax,
                  double ay, double bx, double by)
{
    const struct bh_blockmap *map = gb->map;
    uint32_t r0 = grid_row(map, min2(ay, by) - gb->margin_y);
    uint32_t r1 = grid_row(map, max2(ay, by) + gb->margin_y);
    double dx = bx - ax;
    double per_y = ay != by ? 1 / (by - ay) : 0;
    int rc = 0;

    for (uint32_t r = r0; r <= r1; r++) {
        double x0 = min2(ax, bx), x1 = max2(ax, bx);
        double middle = map->min_lat + (r + 0.5) * gb->cell_h;
        uint32_t c0, c1;

        if ((ay > middle) != (by > middle)) {
            if (gb->ncross == gb->cross_cap) {
                size_t cap = gb->cross_cap ? gb->cross_cap * 2 : 256;
                struct grid_cross *cross = realloc(gb->cross, cap * sizeof(*cross));

                if (!cross) {
                    rc = -ENOMEM;
                    bh__fail(ld, "out of memory");
                    goto out;
                }
                gb->cross = cross;
                gb->cross_cap = cap;
            }
            gb->cross[gb->ncross].x = ax + (middle - ay) * per_y * dx;
            gb->cross[gb->ncross].row = r;
            gb->ncross++;
        }
        if (ay != by && r0 != r1) {
            double lo = map->min_lat + r * gb->cell_h - gb->margin_y;
            double hi = map->min_lat + (r + 1) * gb->cell_h + gb->margin_y;
            double t0 = min2(max2((lo - ay) * per_y, 0), 1);
            double t1 = min2(max2((hi - ay) * per_y, 0), 1);

            x0 = ax + t0 * dx;
            x1 = ax + t1 * dx;
            if (x0 > x1) {
                double t = x0;

                x0 = x1;
                x1 = t;
            }
        }
        c0 = grid_col(map, x0 - gb->margin_x);
        c1 = grid_col(map, x1 + gb->margin_x);
        for (uint32_t c = c0; c <= c1; c++) {
            rc = grid_touch(ld, gb, index, r * map->grid_cols + c);
            if (rc < 0)
                goto out;
        }
    }
out:
    return rc;
}

static inline bool
cross_before(const struct grid_cross *a, const struct grid_cross *b)
{
    return a->row < b->row || (a->row == b->row && a->x < b->x);
}

static int
compare_cross(const void *pa, const void *pb)
{
    const struct grid_cross *a = pa, *b = pb;

    return cross_before(a, b) ? -1 : cross_before(b, a);
}

/* By row, then x. */
static void
sort_cross(struct grid_cross *v, size_t n)
{
    if (n > 32) {
        qsort(v, n, sizeof(*v), compare_cross);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        struct grid_cross x = v[i];
        size_t j = i;

        for (; j > 0 && cross_before(&x, &v[j - 1]); j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
}

/*
 * Block INDEX: notes the cells its boundary comes near, then makes it the
 * owner of every other cell whose middle it covers, unless a block with a
 * smaller index already owns the cell.
 */
static int
grid_block(struct bh__loader *ld, struct grid_builder *gb, uint32_t index)
{
    struct bh_blockmap *map = gb->map;
    const struct bh__block *b = &map->blocks[index];
    const union bh__word *w = &map->shapes[b->shape + 1];
    int rc = 0;

    gb->ncross = 0;
    for (uint32_t k = 0; k < b->nrings; k++) {
        const union bh__word *p = w + 1;
        uint32_t n = w->u[0];

        for (uint32_t j = 0; j + 1 < n; j++) {
            rc = grid_mark_segment(ld, gb, index, p[2 * j].d, p[2 * j + 1].d, p[2 * j + 2].d,
                                   p[2 * j + 3].d);
            if (rc < 0)
                goto out;
        }
        w = p + 2 * n;
    }
    sort_cross(gb->cross, gb->ncross);
    /* In a row, between the 1st and 2nd crossing, the 3rd and 4th...: inside. */
    for (size_t i = 0; i + 1 < gb->ncross; i += 2) {
        const struct grid_cross *from = &gb->cross[i], *to = &gb->cross[i + 1];
        uint32_t c1 = grid_col(map, to->x);

        for (uint32_t c = grid_col(map, from->x); c <= c1; c++) {
            uint32_t cell = from->row * map->grid_cols + c;
            double x = map->min_lon + (c + 0.5) * gb->cell_w;

            if (gb->cells[cell].last != index + 1 && gb->cells[cell].owner == 0 && x > from->x &&
                x < to->x)
                gb->cells[cell].owner = index + 1;
        }
    }
out:
    return rc;
}

/* Cell C's candidates, in gb->list, ascending; *N gets how many. */
static int
grid_candidates(struct bh__loader *ld, struct grid_builder *gb, const struct build_cell *c,
                uint32_t *n)
{
    uint32_t k = 0;
    int rc = 0;

    *n = 0;
    if (c->first == 0)
        goto out;
    if (!(c->second & BUILD_MORE)) {
        gb->list[0] = c->first - 1;
        gb->list[1] = c->second - 1;
        *n = c->second ? 2 : 1;
        goto out;
    }
    for (uint32_t m = (c->second & ~BUILD_MORE) + 1; m; m = gb->more[m - 1].before)
        k++;
    if (gb->list_cap < k + 1) {
        uint32_t *list = malloc((k + 1) * sizeof(*list));

        if (!list) {
            rc = -ENOMEM;
            bh__fail(ld, "out of memory");
            goto out;
        }
        if (gb->list_cap > 2)
            free(gb->list);
        gb->list = list;
        gb->list_cap = k + 1;
    }
    gb->list[0] = c->first - 1;
    *n = k + 1;
    for (uint32_t m = (c->second & ~BUILD_MORE) + 1; m; m = gb->more[m - 1].before)
        gb->list[k--] = gb->more[m - 1].block;
out:
    return rc;
}

/*
 * Encodes every cell as CELL_... says, from its owner and those of its
 * candidates below the owner (all of them if it has none). The cells become
 * map->cells in place: the 8-byte cell C overwrites half of the 16-byte build
 * cell C / 2, which has been read already. (It is written as uint32_t, the
 * type of the build cells' members, so that the compiler sees the overlap.)
 */
static int
grid_encode(struct bh__loader *ld, struct grid_builder *gb)
{
    struct bh_blockmap *map = gb->map;
    size_t ncells = (size_t)map->grid_cols * map->grid_rows;
    uint32_t *out = (uint32_t *)gb->cells;
    size_t cap = 0;
    int rc = 0;

    for (size_t c = 0; c < ncells; c++) {
        struct build_cell bc = gb->cells[c];
        struct bh__cell cell = {.a = bc.owner, .b = 0};
        uint32_t n;

        rc = grid_candidates(ld, gb, &bc, &n);
        if (rc < 0)
            goto out;
        while (n > 0 && bc.owner != 0 && gb->list[n - 1] + 1 >= bc.owner)
            n--;
        if (n == 1) {
            cell.a = CELL_ONE | map->blocks[gb->list[0]].shape;
            cell.b = bc.owner;
        } else if (n == 2 && bc.owner == 0) {
            cell.a = CELL_TWO | map->blocks[gb->list[0]].shape;
            cell.b = map->blocks[gb->list[1]].shape;
        } else if (n > 0) {
            if (cap - map->nlists < n + 2) {
                uint32_t *lists = NULL;

                cap = cap ? cap * 2 : 4096;
                while (cap - map->nlists < n + 2)
                    cap *= 2;
                if (cap <= UINT32_MAX)
                    lists = realloc(map->lists, cap * sizeof(*lists));
                if (!lists) {
                    rc = -ENOMEM;
                    bh__fail(ld, "out of memory");
                    goto out;
                }
                map->lists = lists;
            }
            map->lists[map->nlists] = n;
            for (uint32_t i = 0; i < n; i++)
                map->lists[map->nlists + 1 + i] = map->blocks[gb->list[i]].shape;
            map->lists[map->nlists + n + 1] = bc.owner;
            cell.a = CELL_LIST;
            cell.b = (uint32_t)map->nlists;
            map->nlists += n + 2;
        }
        out[2 * c] = cell.a;
        out[2 * c + 1] = cell.b;
    }
    /* The cells take half the memory now; if it cannot shrink, it stays as it is. */
    map->cells = realloc(gb->cells, ncells * sizeof(*map->cells));
    if (!map->cells)
        map->cells = (struct bh__cell *)gb->cells;
    gb->cells = NULL;
out:
    return rc;
}

int
bh__build_grid(struct bh__loader *ld)
{
    struct bh_blockmap *map = ld->map;
    uint32_t list[2];
    struct grid_builder gb = {.map = map, .list = list, .list_cap = 2};
    struct timespec t0, t1;
    union bh__word *shapes;
    int rc = -EINVAL;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
    if (map->count >= CELL_PAYLOAD) {
        bh__fail(ld, "the map has too many blocks");
        goto out;
    }
    /* The shape records learn their blocks' indexes, and get room to prefetch past the last. */
    rc = bh__reserve_shapes(ld, SHAPE_PREFETCH);
    if (rc < 0)
        goto out;
    memset(&map->shapes[map->nshapes], 0, SHAPE_PREFETCH * sizeof(*map->shapes));
    for (size_t i = 0; i < map->count; i++)
        map->shapes[map->blocks[i].shape].u[0] = (uint32_t)i;
    grid_size(map);
    gb.cell_w = (map->max_lon - map->min_lon) / map->grid_cols;
    gb.cell_h = (map->max_lat - map->min_lat) / map->grid_rows;
    /*
     * A million times the rounding errors in placing a point in a cell or a
     * segment across cells (a few units in the last place of the coordinates).
     */
    gb.margin_x = 1e-6 * gb.cell_w + 1e-10 * max2(fabs(map->min_lon), fabs(map->max_lon));
    gb.margin_y = 1e-6 * gb.cell_h + 1e-10 * max2(fabs(map->min_lat), fabs(map->max_lat));
    rc = -ENOMEM;
    gb.cells = calloc((size_t)map->grid_cols * map->grid_rows, sizeof(*gb.cells));
    if (!gb.cells) {
        bh__fail(ld, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < map->count; i++) {
        rc = grid_block(ld, &gb, (uint32_t)i);
        if (rc < 0)
            goto out;
    }
    rc = grid_encode(ld, &gb);
    if (rc < 0)
        goto out;
    /* Give back what the shape records grew past their size. */
    shapes = realloc(map->shapes, (map->nshapes + SHAPE_PREFETCH) * sizeof(*shapes));
    if (shapes)
        map->shapes = shapes;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
    map->grid_cpu = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
out:
    free(gb.cells);
    free(gb.more);
    if (gb.list != list)
        free(gb.list);
    free(gb.cross);
    return rc;
}

/*
 * The orientation of p = (x, y) with respect to the segment a -> b: 1 if p is
 * to its left, -1 if to its right, 0 if too close to call (which includes on
 * its line). The determinant d = l - r is computed in doubles, with an error
 * under 3.4e-16 (|l| + |r|) (Shewchuk, "Adaptive Precision Floating-Point
 * Arithmetic and Fast Robust Geometric Predicates", 1997, orient2d). It is
 * trusted only when it exceeds ORIENTATION_SAFE (1e-14) times
 * |l| + |r| + 2 |u w|, and is far from underflow: then its sign is the exact
 * one, and the exact determinant exceeds 0.96e-14 of that bound. GEOS's
 * orientation test (CGAlgorithmsDD::orientationIndex) then gives the same
 * sign: it answers either from a floating-point filter that is exact when it
 * answers, or from the determinant of b - a and p - b in double-double, whose
 * products are bounded by |l| + |r| + 2 |u w| (p - b is (p - a) - (b - a))
 * and whose error is about 1e-30 of them.
 */
static inline int
orientation(double ax, double ay, double bx, double by, double x, double y)
{
    double u = bx - ax, w = by - ay;
    double l = u * (y - ay), r = w * (x - ax);
    double d = l - r;
    double bound = ORIENTATION_SAFE * (fabs(l) + fabs(r) + 2 * fabs(u * w));

    if (fabs(d) > bound && fabs(d) > 1e-280)
        return d > 0 ? 1 : -1;
    return 0;
}

/*
 * Whether the block of shape record S covers p = (x, y), by its rings: 1 if
 * it does (p is inside or on the boundary), 0 if it does not, -1 if that is
 * too close to call in doubles or the block is left to GEOS (then GEOS
 * decides).
 *
 * A ray from p towards +x crosses the rings an odd number of times iff p is
 * inside (for a valid Polygon or MultiPolygon, counting every ring of every
 * part); an edge counts if one end is above p and the other not, and the ray
 * passes it. That is the ray-crossing test GEOS's point locator makes
 * (RayCrossingCounter), and this one makes the same orientation tests: one
 * for each edge with an end above p and the other not, unless both ends are
 * left of p or p is one of them. Every other test is an exact comparison. So
 * if every orientation decides, both tests compute with exact signs, and both
 * give the exact answer: the same one. A point on the boundary is either found
 * exactly (a vertex, or on a horizontal edge) or lies on the line of an edge
 * with an end above it and one not, which orientation() never decides.
 */
static int
rings_cover(const union bh__word *s, double x, double y)
{
    uint32_t nrings = s[0].u[1];
    const union bh__word *w = s + 1;
    bool inside = false;

    if (nrings == 0)
        return -1;
    for (uint32_t k = 0; k < nrings; k++) {
        const union bh__word *p = w + 1;
        const union bh__word *last = p + 2 * (w->u[0] - 1);

        for (w = last + 2; p < last; p += 2) {
            double ax = p[0].d, ay = p[1].d, bx = p[2].d, by = p[3].d;
            int o;

            if ((ay > y) == (by > y)) {
                /* No crossing; the point can only be on it as a vertex or a horizontal edge. */
                if (ay == y && (ax == x || (by == y && (ax <= x) != (bx < x))))
                    return 1;
                continue;
            }
            if (ax < x && bx < x)
                continue; /* passes left of the point */
            if ((ax == x && ay == y) || (bx == x && by == y))
                return 1;
            o = orientation(ax, ay, bx, by, x, y);
            if (o == 0)
                return -1;
            /* Upward, the ray passes it if the point is to its left; downward, to its right. */
            if ((o > 0) == (by > ay))
                inside = !inside;
        }
    }
    return inside;
}

static inline void
prefetch_shape(const union bh__word *s)
{
    __builtin_prefetch(s);
    __builtin_prefetch(s + 8);
    __builtin_prefetch(s + 16);
}

/*
 * The first of the N blocks of shape records RECORDS (ascending index) that
 * covers (lon, lat), else the block OWNER - 1, else NULL. Their records are
 * fetched all at once, so that their cache misses overlap.
 */
static const struct bh_block *
locate_among(const struct bh_blockmap *map, const uint32_t *records, uint32_t n, uint32_t owner,
             double lon, double lat)
{
    const struct bh_block *found = NULL;
    GEOSGeometry *point = NULL;

    for (uint32_t k = 0; k < n; k++)
        prefetch_shape(&map->shapes[records[k]]);
    for (uint32_t k = 0; k < n; k++) {
        const union bh__word *s = &map->shapes[records[k]];
        int covers = rings_cover(s, lon, lat);

        if (covers < 0) {
            if (!point)
                point = GEOSGeom_createPointFromXY_r(map->geos, lon, lat);
            if (!point)
                goto out;
            covers = GEOSPreparedCovers_r(map->geos, map->blocks[s->u[0]].prep, point) == 1;
        }
        if (covers) {
            found = &map->blocks[s->u[0]].pub;
            goto out;
        }
    }
    if (owner)
        found = &map->blocks[owner - 1].pub;
out:
    if (point)
        GEOSGeom_destroy_r(map->geos, point);
    return found;
}

const struct bh_block *
bh_blockmap_locate(const struct bh_blockmap *map, double lon, double lat)
{
    const struct bh__cell *cell;
    const uint32_t *list;
    uint32_t records[2];

    if (!map || !isfinite(lon) || !isfinite(lat))
        return NULL;
    if (lon < map->min_lon || lon > map->max_lon || lat < map->min_lat || lat > map->max_lat)
        return NULL;
    cell = &map->cells[(size_t)grid_row(map, lat) * map->grid_cols + grid_col(map, lon)];
    switch (cell->a & CELL_TAG) {
    case CELL_ONE:
        records[0] = cell->a & CELL_PAYLOAD;
        return locate_among(map, records, 1, cell->b, lon, lat);
    case CELL_TWO:
        records[0] = cell->a & CELL_PAYLOAD;
        records[1] = cell->b;
        return locate_among(map, records, 2, 0, lon, lat);
    case CELL_LIST:
        list = &map->lists[cell->b];
        return locate_among(map, list + 1, list[0], list[list[0] + 1], lon, lat);
    default:
        return cell->a ? &map->blocks[cell->a - 1].pub : NULL;
    }
}

void
bh_blockmap_grid_info(const struct bh_blockmap *map, struct bh_blockmap_grid_info *info)
{
    size_t ncells;

    memset(info, 0, sizeof(*info));
    if (!map)
        return;
    ncells = (size_t)map->grid_cols * map->grid_rows;
    info->cols = map->grid_cols;
    info->rows = map->grid_rows;
    for (size_t c = 0; c < ncells; c++) {
        const struct bh__cell *cell = &map->cells[c];

        switch (cell->a & CELL_TAG) {
        case CELL_ONE:
            info->list_cells++;
            info->list_entries++;
            break;
        case CELL_TWO:
            info->list_cells++;
            info->list_entries += 2;
            break;
        case CELL_LIST:
            info->list_cells++;
            info->list_entries += map->lists[cell->b];
            break;
        default:
            info->owned_cells += cell->a != 0;
            info->empty_cells += cell->a == 0;
        }
    }
    info->grid_bytes = ncells * sizeof(*map->cells) + map->nlists * sizeof(*map->lists);
    info->rings_bytes = (map->nshapes + SHAPE_PREFETCH) * sizeof(*map->shapes);
    info->build_cpu = map->grid_cpu;
}
