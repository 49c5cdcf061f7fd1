/* Unit tests for common/map.c. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "map.h"

typedef struct item {
    map_node_t node;
    char key[16];
    int v;
} item_t;

Test(map, put_get_del_iterate)
{
    enum { N = 5000 };
    static item_t items[N];
    map_t m = MAP_INIT;
    for (int i = 0; i < N; i++) {
        snprintf(items[i].key, sizeof items[i].key, "k%d", i);
        items[i].v = i;
        cr_assert_eq(map_put(&m, &items[i].node, items[i].key), 0);
    }
    cr_assert_eq(m.count, N);
    for (int i = 0; i < N; i++) {
        map_node_t *n = map_get(&m, items[i].key);
        cr_assert_not_null(n);
        cr_assert_eq(map_entry(n, item_t, node)->v, i);
    }
    cr_assert_null(map_get(&m, "missing"));
    /* Delete every other item while iterating. */
    size_t seen = 0;
    for (map_node_t *n = map_first(&m), *next; n; n = next) {
        next = map_next(&m, n);
        item_t *it = map_entry(n, item_t, node);
        if (it->v % 2) map_del(&m, n);
        seen++;
    }
    cr_assert_eq(seen, N);
    cr_assert_eq(m.count, N / 2);
    cr_assert_null(map_get(&m, "k1"));
    cr_assert_not_null(map_get(&m, "k2"));
    map_free(&m);
}
