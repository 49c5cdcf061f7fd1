/*
 * map: an intrusive, string-keyed hash table (chained, power-of-two buckets).
 *
 * Objects embed a map_node_t and give it a key that lives as long as the object does, so
 * inserting allocates nothing but the occasional bucket array. The map never owns objects:
 * removing a node does not free it. Iterate with map_first/map_next; removing the current
 * node during iteration is allowed when the next node was fetched first.
 */
#ifndef CHAT_MAP_H
#define CHAT_MAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct map_node {
    struct map_node *next;
    const char *key;
    uint32_t hash;
} map_node_t;

typedef struct map {
    map_node_t **buckets;
    size_t nbuckets;
    size_t count;
} map_t;

#define MAP_INIT {NULL, 0, 0}

uint32_t map_hash(const char *key);
map_node_t *map_get(const map_t *m, const char *key);
/* Insert a node whose key is not present. 0 or -1 (out of memory). */
int map_put(map_t *m, map_node_t *n, const char *key);
void map_del(map_t *m, map_node_t *n);
map_node_t *map_first(const map_t *m);
map_node_t *map_next(const map_t *m, const map_node_t *n);
void map_free(map_t *m);

#define map_entry(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#endif
