/*
 * rooms: a worker's room and user indexes, and in-order delivery of room messages.
 *
 * Room messages carry a per-room `seq` assigned by PostgreSQL inside the insert
 * transaction, so it is gapless. Each room on a worker remembers the highest seq it
 * delivered in order; a message that arrives early (another worker or instance published
 * the next one first) waits in the room's pending list for up to GAP_WAIT_MS, after which
 * the missing messages are read from the store. A member that joins while messages are in
 * flight is caught up from the store before it receives live messages. Each member also
 * remembers the last seq it was given, so nothing is delivered twice.
 */
#ifndef GW_ROOMS_H
#define GW_ROOMS_H

#include "worker.h"

#define GAP_WAIT_MS 100
#define GAP_MAX_PENDING 10000

enum member_state { MS_JOINING = 0, MS_CATCHUP = 1, MS_READY = 2 };

gw_member_t *room_member_find(gw_sock_t *s, const char *room_id);
/* Add a membership in state JOINING (subscribes the worker to the room when it is the
 * first local member). NULL when out of memory. */
gw_member_t *room_member_add(gw_sock_t *s, const char *room_id);
void room_member_remove(gw_member_t *m);
/* The join was acknowledged with history up to snapshot_seq. */
void room_member_joined(gw_member_t *m, int64_t snapshot_seq);

/* Deliver an ordered room message (data: the new_message JSON). */
void room_message(gw_worker_t *w, const char *room_id, int64_t seq, const char *data, size_t len);
/* Deliver an unordered room event to ready members. */
void room_event(gw_worker_t *w, const char *room_id, gw_bcast_t *b, gw_sock_t *exclude, int eo);
/* Read every room's messages after its last delivered seq (after a bus outage). */
void rooms_resync(gw_worker_t *w);
void rooms_free_all(gw_worker_t *w);

gw_user_t *user_attach(gw_sock_t *s, const char *id, const char *username);
void user_detach(gw_sock_t *s);
gw_user_t *user_find(gw_worker_t *w, const char *id);

#endif
