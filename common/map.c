#include "map.h"

#include <stdlib.h>
#include <string.h>

uint32_t map_hash(const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h;
}

map_node_t *map_get(const map_t *m, const char *key)
{
    if (!m->nbuckets) return NULL;
    uint32_t h = map_hash(key);
    for (map_node_t *n = m->buckets[h & (m->nbuckets - 1)]; n; n = n->next)
        if (n->hash == h && strcmp(n->key, key) == 0) return n;
    return NULL;
}

static int grow(map_t *m)
{
    size_t nb = m->nbuckets ? m->nbuckets * 2 : 16;
    map_node_t **b = calloc(nb, sizeof *b);
    if (!b) return -1;
    for (size_t i = 0; i < m->nbuckets; i++) {
        map_node_t *n = m->buckets[i];
        while (n) {
            map_node_t *next = n->next;
            size_t j = n->hash & (nb - 1);
            n->next = b[j];
            b[j] = n;
            n = next;
        }
    }
    free(m->buckets);
    m->buckets = b;
    m->nbuckets = nb;
    return 0;
}

int map_put(map_t *m, map_node_t *n, const char *key)
{
    if (m->count >= m->nbuckets && grow(m) < 0) return -1;
    n->key = key;
    n->hash = map_hash(key);
    size_t i = n->hash & (m->nbuckets - 1);
    n->next = m->buckets[i];
    m->buckets[i] = n;
    m->count++;
    return 0;
}

void map_del(map_t *m, map_node_t *n)
{
    if (!m->nbuckets) return;
    map_node_t **pp = &m->buckets[n->hash & (m->nbuckets - 1)];
    while (*pp && *pp != n) pp = &(*pp)->next;
    if (*pp) {
        *pp = n->next;
        m->count--;
    }
    n->next = NULL;
}

map_node_t *map_first(const map_t *m)
{
    for (size_t i = 0; i < m->nbuckets; i++)
        if (m->buckets[i]) return m->buckets[i];
    return NULL;
}

map_node_t *map_next(const map_t *m, const map_node_t *n)
{
    if (n->next) return n->next;
    for (size_t i = (n->hash & (m->nbuckets - 1)) + 1; i < m->nbuckets; i++)
        if (m->buckets[i]) return m->buckets[i];
    return NULL;
}

void map_free(map_t *m)
{
    free(m->buckets);
    m->buckets = NULL;
    m->nbuckets = m->count = 0;
}
