/*
 * zvsr.h - C client for zvsr clusters (Viewstamped Replication over ZeroMQ, msgpack on the wire).
 *
 * The wire protocol is docs/protocol.md; this library implements its client side (§2-§7):
 *
 *   - a client is one session, registered through the log before its first call (and again after
 *     session_expired), as part of that call: a register (a random 64-bit nonce from getrandom /
 *     /dev/urandom as client_id, request_number 0, no operation) whose reply names the session id, which is
 *     the client_id from then on (docs/protocol.md §5, "Registration"); request numbers 1, 2, 3, ... and at
 *     most one request outstanding (calls on one client must not overlap: use one client per thread, or a
 *     lock). A call whose register gets no session fails with the register's status, and a message saying
 *     the operation was not sent;
 *   - one DEALER socket per endpoint; the endpoints are either proxies (default) or, with
 *     options.direct, every replica's client endpoint in replica-index order;
 *   - direct: a call sends its Request to the primary (view mod n), follows Redirects to newer views, and
 *     re-sends the *same* (client_id, request_number, operation) to every replica when no answer arrives
 *     in time (200 ms doubling to 1.6 s, with jitter) or shortly after an Error unavailable / busy /
 *     view_change; it follows reconfiguration: a Redirect to a replica it cannot place, or a re-send to
 *     every replica, makes it ask them for the status query (at most every 500 ms), and a later epoch's
 *     membership replaces the replicas addressed (primary of view v: members[(v - start_view) mod n]);
 *   - via proxies (shuffled once per client): the proxy retries toward the replicas and answers by its own
 *     deadline, so a call sends its Request to one proxy (the one the last request went to) and re-sends
 *     the same request, to the next proxy, only when that one cannot answer: its socket has no connection
 *     (ZMQ_IMMEDIATE refuses the send: at once), it answered an Error timeout / unavailable / busy (after
 *     50 ms), or 2.5 s passed without any answer (a proxy restarted and forgot the request);
 *   - bad_request and session_expired end the call;
 *   - every call ends within options.timeout_ms with a result or a status. ZVSR_ERR_TIMEOUT means the
 *     outcome is unknown (the request may have been executed); ZVSR_ERR_UNAVAILABLE and ZVSR_ERR_BUSY are
 *     reported only when nothing left (no proxy connected) or every attempt that left was refused, so the
 *     request certainly did not execute.
 *
 * Everything received is validated (types, lengths, bounds) before use; malformed answers are ignored.
 * Functions never print; details of the last failure are in zvsr_last_message().
 */
#ifndef ZVSR_H
#define ZVSR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ZVSR_VERSION "0.1.0"

/* Bounds of docs/protocol.md (zvsr/constants.py). */
#define ZVSR_DEFAULT_TIMEOUT_MS 5000
#define ZVSR_OPERATION_BYTES_MAX 65536                            /* one operation */
#define ZVSR_REQUEST_BYTES_MAX (ZVSR_OPERATION_BYTES_MAX + 1024)   /* one encoded Request */
#define ZVSR_RESULT_BYTES_MAX (1024 * 1024)                        /* one result */
#define ZVSR_REPLY_BYTES_MAX (ZVSR_RESULT_BYTES_MAX + 1024)        /* one encoded Reply / Redirect / Error */
#define ZVSR_ERROR_MESSAGE_CHARS_MAX 1024
#define ZVSR_REPLICAS_MAX 15                                       /* members of a configuration */
#define ZVSR_REPLICA_ID_MAX UINT32_MAX                             /* stable replica ids, never reused */

/* --- status codes ------------------------------------------------------------------------------------ */

typedef enum zvsr_status {
    ZVSR_OK = 0,
    ZVSR_ERR_UNAVAILABLE = 1, /* no primary/proxy could take it; every attempt refused: NOT executed */
    ZVSR_ERR_BUSY = 2,        /* a bound on queued work was reached: NOT executed; retry later */
    ZVSR_ERR_BAD_REQUEST = 3, /* the cluster (or this library) refused the request as malformed */
    ZVSR_ERR_TIMEOUT = 4,     /* no result within the timeout: outcome UNKNOWN */
    ZVSR_ERR_APP = 5,         /* the app executed it and answered an error result: zvsr_app_error() */
    ZVSR_ERR_PROTOCOL = 6,    /* a result that is not what the app answers (not msgpack, wrong shape) */
    ZVSR_ERR_NOMEM = 7,       /* out of memory */
    ZVSR_ERR_INVALID = 8,     /* an invalid argument (endpoint, key not UTF-8, CurveZMQ key, ...) */
    ZVSR_ERR_ZMQ = 9,         /* a ZeroMQ call failed (context, socket, option, connect) */
    ZVSR_ERR_SESSION_EXPIRED = 10 /* the cluster evicted this client's session: not executed by this call (and
                                   * never will be), but an earlier attempt may have been (outcome UNKNOWN);
                                   * the next call registers a new session */
} zvsr_status;

/* "ok", "unavailable", "busy", "bad_request", "timeout", "app_error", "protocol_error", "no_memory",
 * "invalid_argument", "zmq_error", "session_expired" (never NULL; "unknown" for other values). */
const char *zvsr_status_name(zvsr_status status);

/* --- buffers ------------------------------------------------------------------------------------------ */

/* A growable byte buffer filled by the library. Start with ZVSR_BUFFER_INIT (or zeroes), reuse it across
 * calls, release it with zvsr_buffer_free. After a successful fill data[len] == 0, so text results can be
 * used as C strings (they may contain NUL bytes only if the value did). */
typedef struct zvsr_buffer {
    uint8_t *data;
    size_t len;
    size_t cap;
} zvsr_buffer;

#define ZVSR_BUFFER_INIT {NULL, 0, 0}

void zvsr_buffer_free(zvsr_buffer *buffer);

/* --- the client --------------------------------------------------------------------------------------- */

typedef struct zvsr_options {
    int timeout_ms;  /* bound on each call; <= 0: ZVSR_DEFAULT_TIMEOUT_MS */
    bool direct;     /* false: endpoints are proxies; true: the replicas' client endpoints, index order */
    /* CurveZMQ (all three or none): the server's public key and this client's key pair, each as a
     * 40-character Z85 string (zmq_curve_keypair, `zvsr keys`). NULL: plain TCP. */
    const char *curve_server_key;
    const char *curve_public_key;
    const char *curve_secret_key;
    void *zmq_context; /* a ZeroMQ context to use; NULL: the client creates (and terminates) its own */
} zvsr_options;

/* Defaults: 5 s timeout, proxies, no CurveZMQ, own context. */
void zvsr_options_init(zvsr_options *options);

typedef struct zvsr_client zvsr_client;

/* A new client for `n` endpoints ("tcp://host:port"); `options` may be NULL (defaults). Connecting is
 * asynchronous: unreachable endpoints show up in the first call, not here (every proxy unreachable:
 * ZVSR_ERR_UNAVAILABLE, nothing was sent; replicas: ZVSR_ERR_TIMEOUT). On failure *client is NULL and
 * zvsr_last_message(NULL) says why (per thread). */
zvsr_status zvsr_client_new(const char *const endpoints[], size_t n, const zvsr_options *options,
                            zvsr_client **client);

/* Closes the sockets (linger 0: an unanswered request is dropped) and frees everything. NULL is fine. */
void zvsr_client_free(zvsr_client *client);

uint64_t zvsr_client_id(const zvsr_client *client); /* the session id; its random nonce until registered */
uint64_t zvsr_client_request_number(const zvsr_client *client); /* the last one used; 0 before any */
uint64_t zvsr_client_view(const zvsr_client *client);           /* the highest view seen */
uint64_t zvsr_client_epoch(const zvsr_client *client); /* of the configuration addressed (0: as given) */

/* Human-readable detail of the last call's outcome ("" after ZVSR_OK); with client == NULL, of this
 * thread's last failed zvsr_client_new. Valid until the next call on the client. */
const char *zvsr_last_message(const zvsr_client *client);

/* After ZVSR_ERR_APP: the app's error code ("bad_request", "type_error", "out_of_range", "app_error", ...);
 * otherwise "". */
const char *zvsr_app_error(const zvsr_client *client);

/* Runs any operation (opaque bytes; for the built-in app, one msgpack value) and puts the app's result
 * bytes in *result, uninterpreted (an app error result is ZVSR_OK here). An operation longer than
 * ZVSR_OPERATION_BYTES_MAX is ZVSR_ERR_BAD_REQUEST without sending anything. */
zvsr_status zvsr_execute(zvsr_client *client, const uint8_t *operation, size_t len, zvsr_buffer *result);

/* --- the built-in coordination app (docs/protocol.md §7) ---------------------------------------------- */

/* Keys, lock names, owners and string values are NUL-terminated UTF-8 (else ZVSR_ERR_INVALID). An app
 * error result (e.g. incr of a non-int) is ZVSR_ERR_APP with zvsr_app_error() / zvsr_last_message(). */

typedef enum zvsr_value_kind {
    ZVSR_VALUE_NIL = 0,  /* nil: a missing key (or one holding nil); the text is empty */
    ZVSR_VALUE_STR = 1,  /* a str: the text is its bytes, unquoted */
    ZVSR_VALUE_OTHER = 2 /* any other value: the text is its JSON rendering (zvsr_render) */
} zvsr_value_kind;

/* KEY's value as text. */
zvsr_status zvsr_get(zvsr_client *client, const char *key, zvsr_buffer *value, zvsr_value_kind *kind);
/* Sets KEY to the str VALUE. */
zvsr_status zvsr_put(zvsr_client *client, const char *key, const char *value);
/* Deletes KEY; *existed (may be NULL) says whether it existed. */
zvsr_status zvsr_del(zvsr_client *client, const char *key, bool *existed);
/* Adds BY to the int at KEY (missing counts as 0); *value (may be NULL) is the new value. A new value
 * above INT64_MAX is ZVSR_ERR_PROTOCOL (the app allows up to 2^64-1). */
zvsr_status zvsr_incr(zvsr_client *client, const char *key, int64_t by, int64_t *value);
/* Sets KEY to the str NEW iff it holds the str EXPECTED (EXPECTED NULL: iff KEY is missing). *swapped says
 * whether it did; *current / *kind (each may be NULL) get KEY's value after the operation, as zvsr_get. */
zvsr_status zvsr_cas(zvsr_client *client, const char *key, const char *expected, const char *new_value,
                     bool *swapped, zvsr_buffer *current, zvsr_value_kind *kind);
/* Takes lock NAME for OWNER (re-entrant). *acquired: OWNER holds it now; *token: the holder's fencing
 * token; *holder (may be NULL): the holder's name, NUL-terminated. */
zvsr_status zvsr_lock(zvsr_client *client, const char *name, const char *owner, bool *acquired,
                      uint64_t *token, zvsr_buffer *holder);
/* Releases lock NAME if OWNER holds it; *released says whether it did. */
zvsr_status zvsr_unlock(zvsr_client *client, const char *name, const char *owner, bool *released);

/* --- leases (docs/operations.md, "Leases and locks that expire") ---------------------------------------- */

/* A lease ends TTL milliseconds of cluster time after its grant or latest keepalive, or when revoked, and takes
 * with it every key put and every lock taken with it: a holder that dies releases its locks by itself. Keep a
 * lease alive every ttl/3, and count on it for at most ttl * 0.95 measured from the time you *sent* the last
 * keepalive that was answered (replicas' clocks may run up to 5% apart in rate). A process that pauses can
 * outlive its lease without noticing, so a resource that must never serve two holders checks the lock's
 * fencing token as well. A lease that is not live (expired, revoked, never granted) makes the calls below
 * fail with ZVSR_ERR_APP and zvsr_app_error() "lease_not_found". */

/* Grants a lease of TTL_MS milliseconds; *lease (may be NULL) gets its id. LOCK_DELAY_MS: when the lease
 * expires (not when it is revoked), its locks stay unavailable this long (0: none). Out of the app's bounds:
 * ZVSR_ERR_APP "out_of_range"; too many live leases: "lease_limit". */
zvsr_status zvsr_lease_grant(zvsr_client *client, uint64_t ttl_ms, uint64_t lock_delay_ms, uint64_t *lease);
/* Renews LEASE for a full ttl; *remaining_ms (may be NULL) gets the time it now has left. */
zvsr_status zvsr_lease_keepalive(zvsr_client *client, uint64_t lease, uint64_t *remaining_ms);
/* Ends LEASE now: its keys are deleted and its locks released (without lock delay). *revoked (may be NULL):
 * whether it was live; *deleted (may be NULL): the keys deleted, as a JSON array (zvsr_render). */
zvsr_status zvsr_lease_revoke(zvsr_client *client, uint64_t lease, bool *revoked, zvsr_buffer *deleted);
/* zvsr_put, with KEY attached to LEASE: deleted when the lease ends. */
zvsr_status zvsr_put_with_lease(zvsr_client *client, const char *key, const char *value, uint64_t lease);
/* zvsr_lock, with the lock attached to LEASE: released when the lease ends (with the lease's lock delay if it
 * expired). A lock in its lock delay answers *acquired false with an empty *holder: nobody may take it yet. */
zvsr_status zvsr_lock_with_lease(zvsr_client *client, const char *name, const char *owner, uint64_t lease,
                                 bool *acquired, uint64_t *token, zvsr_buffer *holder);

/* --- operations and values, for zvsr_execute ---------------------------------------------------------- */

/* The canonical operation bytes (docs/protocol.md §7: "op" first, then the fields in the documented order)
 * into *out (replacing its content). The _raw variants take values already msgpack-encoded (exactly one
 * value each, checked). expected == NULL (cas) encodes nil: "the key must be missing". */
zvsr_status zvsr_op_get(zvsr_buffer *out, const char *key);
zvsr_status zvsr_op_put(zvsr_buffer *out, const char *key, const char *value);
zvsr_status zvsr_op_put_raw(zvsr_buffer *out, const char *key, const uint8_t *value, size_t value_len);
zvsr_status zvsr_op_del(zvsr_buffer *out, const char *key);
zvsr_status zvsr_op_incr(zvsr_buffer *out, const char *key, bool with_by, int64_t by);
zvsr_status zvsr_op_cas(zvsr_buffer *out, const char *key, const char *expected, const char *new_value);
zvsr_status zvsr_op_cas_raw(zvsr_buffer *out, const char *key, const uint8_t *expected, size_t expected_len,
                            const uint8_t *new_value, size_t new_len);
zvsr_status zvsr_op_lock(zvsr_buffer *out, const char *name, const char *owner);
zvsr_status zvsr_op_unlock(zvsr_buffer *out, const char *name, const char *owner);
zvsr_status zvsr_op_put_with_lease(zvsr_buffer *out, const char *key, const char *value, uint64_t lease);
zvsr_status zvsr_op_lock_with_lease(zvsr_buffer *out, const char *name, const char *owner, uint64_t lease);
zvsr_status zvsr_op_lease_grant(zvsr_buffer *out, uint64_t ttl_ms, uint64_t lock_delay_ms); /* delay 0: omitted */
zvsr_status zvsr_op_lease_keepalive(zvsr_buffer *out, uint64_t lease);
zvsr_status zvsr_op_lease_revoke(zvsr_buffer *out, uint64_t lease);

/* One msgpack value (e.g. a result) as JSON text into *out: null, true/false, integers in decimal, floats
 * in shortest round-trip form (1.0 stays 1.0), strings quoted and escaped like Python's json.dumps,
 * arrays and maps with ", " and ": " separators, bin as {"$bin": "<hex>"}. ZVSR_ERR_PROTOCOL if the bytes
 * are not exactly one valid msgpack value (ext types are refused). */
zvsr_status zvsr_render(const uint8_t *value, size_t len, zvsr_buffer *out);

/* --- wire level: client messages (docs/protocol.md §4, §10) -------------------------------------------- */

typedef enum zvsr_type {
    ZVSR_TYPE_REQUEST = 20,
    ZVSR_TYPE_REPLY = 21,
    ZVSR_TYPE_REDIRECT = 22,
    ZVSR_TYPE_ERROR = 23
} zvsr_type;

/* A client message. Decoded pointers point into the input (valid while it is); code and message are not
 * NUL-terminated. Fields a kind does not have are zero. */
typedef struct zvsr_wire_message {
    zvsr_type type;
    uint64_t view;           /* Reply, Redirect, Error */
    uint64_t primary;        /* Redirect: a replica id, 0..ZVSR_REPLICA_ID_MAX */
    uint64_t client_id;
    uint64_t request_number;
    const uint8_t *payload;  /* Request: operation; Reply: result */
    size_t payload_len;
    const char *code;        /* Error: unavailable, busy, view_change, bad_request, timeout, session_expired */
    size_t code_len;
    const char *message;     /* Error: UTF-8, at most 1024 code points */
    size_t message_len;
} zvsr_wire_message;

/* Why a decoder refused its input: the reasons of docs/protocol.md §10 (the zvsr codec's). */
typedef enum zvsr_decode_result {
    ZVSR_DECODE_OK = 0,
    ZVSR_DECODE_NOT_MSGPACK,
    ZVSR_DECODE_NOT_A_MAP,
    ZVSR_DECODE_UNKNOWN_TYPE,
    ZVSR_DECODE_UNEXPECTED_TYPE,
    ZVSR_DECODE_MISSING_FIELD,
    ZVSR_DECODE_UNKNOWN_FIELD,
    ZVSR_DECODE_WRONG_TYPE,
    ZVSR_DECODE_OUT_OF_RANGE,
    ZVSR_DECODE_TOO_LARGE,
    ZVSR_DECODE_INCONSISTENT
} zvsr_decode_result;

/* "ok", "not_msgpack", "not_a_map", ... as in §10. */
const char *zvsr_decode_result_name(zvsr_decode_result result);

/* What a client receives: Reply, Redirect or Error (types 21..23). */
zvsr_decode_result zvsr_decode_reply(const uint8_t *data, size_t len, zvsr_wire_message *message);
/* What a replica's client port receives: Request (type 20), at most ZVSR_REQUEST_BYTES_MAX bytes. */
zvsr_decode_result zvsr_decode_request(const uint8_t *data, size_t len, zvsr_wire_message *message);
/* The canonical bytes of any client message (type 20..23) into *out. ZVSR_ERR_INVALID for a field out of
 * its bounds (unknown type or error code, primary > 2^32-1, payload or message too large, invalid UTF-8). */
zvsr_status zvsr_encode(const zvsr_wire_message *message, zvsr_buffer *out);

#ifdef __cplusplus
}
#endif

#endif /* ZVSR_H */
