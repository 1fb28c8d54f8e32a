/*
 * zvsr.c - the C client of zvsr (see zvsr.h and docs/protocol.md).
 *
 * Layout: buffers · UTF-8 · a bounded msgpack reader (decoding) · msgpack-c packing (encoding) · client
 * messages · values and rendering · coordination operations · the client (sockets, session, retries) ·
 * coordination helpers.
 *
 * Decoding uses its own reader rather than msgpack-c's unpacker: msgpack_unpack_next allocates an array of
 * the *declared* length before the elements arrive (a hostile 5-byte header could ask for gigabytes) and
 * refuses values nested deeper than MSGPACK_EMBED_STACK_SIZE (32), while the coordination app accepts 64
 * levels. The reader below allocates nothing, checks every length against the input, and mirrors the
 * checks (and their order) of the zvsr codec (zvsr/wire/codec.py and unpack.py), so it refuses exactly what
 * zvsr refuses, with the same reason. Encoding uses msgpack-c's packer, whose output is the canonical form
 * of §3.
 */
#define _DEFAULT_SOURCE
#define _POSIX_C_SOURCE 200809L

#include "zvsr.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <msgpack.h>
#include <zmq.h>

/* zvsr/constants.py */
#define CLIENT_TICK_MS 10
#define DIRECT_RETRY_MS 200
#define DIRECT_RETRY_MAX_MS 1600
#define CLIENT_PROXY_QUIET_MS 2500 /* via proxies: re-send after this long without any answer */
#define RETRY_AFTER_ERROR_TICKS 5 /* zvsr/protocol/client_session.py */
#define CLIENT_MEMBERSHIP_ASK_MS 500 /* direct: at most one status query round this often */
#define ENDPOINT_BYTES_MAX 255       /* a member's client endpoint read from a status answer */
#define STATUS_ANSWER_TYPE 31
#define CLIENT_SNDHWM 1000
#define ZMTP_HEARTBEAT_IVL_MS 1000
#define ZMTP_HEARTBEAT_TIMEOUT_MS 3000
#define ERROR_MESSAGE_BYTES_MAX (4 * ZVSR_ERROR_MESSAGE_CHARS_MAX)
#define CODEC_MAP_LEN_MAX 16 /* codec: the widest message has 9 keys */
#define NESTING_MAX 1024     /* msgpack-python's unpacker stack */
#define MESSAGE_CAP 4608     /* >= ERROR_MESSAGE_BYTES_MAX plus a prefix */
#define MESSAGE_BYTES_MAX ((size_t)256 * 1024 * 1024) /* any input */
/* The replica-to-replica kinds are 1..REPLICA_TYPE_MAX (codec.py; 13 StartEpoch, 14 EpochStarted and 15
 * StartViewChangeProbe are the newest). A client refuses all of them, but a kind that exists is
 * `unexpected_type` and any other number `unknown_type`, as in the codec. */
#define REPLICA_TYPE_MAX 15

/* ====================================================================================================== */
/* buffers                                                                                                 */
/* ====================================================================================================== */

void zvsr_buffer_free(zvsr_buffer *buffer) {
    if (buffer == NULL) return;
    free(buffer->data);
    buffer->data = NULL;
    buffer->len = 0;
    buffer->cap = 0;
}

/* Room for `extra` more bytes plus a NUL. */
static bool buf_reserve(zvsr_buffer *b, size_t extra) {
    if (extra > SIZE_MAX - b->len - 1) return false;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return true;
    size_t cap = b->cap < 64 ? 64 : b->cap;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *data = realloc(b->data, cap);
    if (data == NULL) return false;
    b->data = data;
    b->cap = cap;
    return true;
}

static bool buf_append(zvsr_buffer *b, const void *data, size_t len) {
    if (!buf_reserve(b, len)) return false;
    if (len) memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = 0;
    return true;
}

static bool buf_puts(zvsr_buffer *b, const char *s) { return buf_append(b, s, strlen(s)); }

static bool buf_clear(zvsr_buffer *b) {
    b->len = 0;
    if (!buf_reserve(b, 0)) return false;
    b->data[0] = 0;
    return true;
}

/* msgpack-c packer callback */
static int buf_write(void *data, const char *bytes, size_t len) {
    return buf_append((zvsr_buffer *)data, bytes, len) ? 0 : -1;
}

/* ====================================================================================================== */
/* UTF-8 (strict, as Python's decoder: no overlongs, no surrogates, nothing above U+10FFFF)                */
/* ====================================================================================================== */

static bool utf8_valid(const uint8_t *s, size_t len, size_t *chars_out) {
    size_t chars = 0;
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            chars++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (len - i - 1 < n) return false;
        for (size_t k = 1; k <= n; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (d & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
        chars++;
    }
    if (chars_out) *chars_out = chars;
    return true;
}

static bool cstr_utf8(const char *s) { return s != NULL && utf8_valid((const uint8_t *)s, strlen(s), NULL); }

/* ====================================================================================================== */
/* a bounded msgpack reader                                                                                */
/* ====================================================================================================== */

typedef enum { MP_NIL, MP_BOOL, MP_UINT, MP_NINT, MP_FLOAT, MP_STR, MP_BIN, MP_ARRAY, MP_MAP, MP_EXT } mp_kind;

typedef struct {
    mp_kind kind;
    bool boolean;
    uint64_t u;        /* MP_UINT: the value (any int format holding a value >= 0) */
    int64_t i;         /* MP_NINT: the (negative) value */
    double f;          /* MP_FLOAT (float32 widened) */
    uint32_t len;      /* str/bin/ext: byte length; array: elements; map: pairs */
    const uint8_t *ptr; /* str/bin/ext: the bytes; array/map: the first element */
    const uint8_t *start; /* the first byte of the value's encoding */
} mp_item;

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} mp_cur;

typedef enum { MP_R_OK, MP_R_TRUNCATED, MP_R_RESERVED } mp_rc;

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int k = 0; k < n; k++) v = (v << 8) | p[k];
    return v;
}

/* One header; for str/bin/ext, ptr/len describe the body, which is NOT checked to be present (the caller
 * decides the order of checks) and not consumed. Containers leave the cursor at their first element. */
static mp_rc mp_header(mp_cur *c, mp_item *it) {
    memset(it, 0, sizeof *it);
    if (c->p >= c->end) return MP_R_TRUNCATED;
    it->start = c->p;
    size_t avail = (size_t)(c->end - c->p) - 1;
    uint8_t b = *c->p++;
    const uint8_t *q = c->p;
#define NEED(k)                                                                                              \
    do {                                                                                                     \
        if (avail < (size_t)(k)) return MP_R_TRUNCATED;                                                      \
    } while (0)
    if (b <= 0x7f) {
        it->kind = MP_UINT;
        it->u = b;
    } else if (b >= 0xe0) {
        it->kind = MP_NINT;
        it->i = (int8_t)b;
    } else if ((b & 0xf0) == 0x80) {
        it->kind = MP_MAP;
        it->len = b & 0x0f;
    } else if ((b & 0xf0) == 0x90) {
        it->kind = MP_ARRAY;
        it->len = b & 0x0f;
    } else if ((b & 0xe0) == 0xa0) {
        it->kind = MP_STR;
        it->len = b & 0x1f;
    } else {
        switch (b) {
        case 0xc0: it->kind = MP_NIL; break;
        case 0xc2: it->kind = MP_BOOL; it->boolean = false; break;
        case 0xc3: it->kind = MP_BOOL; it->boolean = true; break;
        case 0xc4: case 0xc5: case 0xc6: {
            int w = b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4;
            NEED(w);
            it->kind = MP_BIN;
            it->len = (uint32_t)be(q, w);
            c->p += w;
            break;
        }
        case 0xd9: case 0xda: case 0xdb: {
            int w = b == 0xd9 ? 1 : b == 0xda ? 2 : 4;
            NEED(w);
            it->kind = MP_STR;
            it->len = (uint32_t)be(q, w);
            c->p += w;
            break;
        }
        case 0xca: {
            NEED(4);
            uint32_t raw = (uint32_t)be(q, 4);
            float f;
            memcpy(&f, &raw, 4);
            it->kind = MP_FLOAT;
            it->f = f;
            c->p += 4;
            break;
        }
        case 0xcb: {
            NEED(8);
            uint64_t raw = be(q, 8);
            double d;
            memcpy(&d, &raw, 8);
            it->kind = MP_FLOAT;
            it->f = d;
            c->p += 8;
            break;
        }
        case 0xcc: case 0xcd: case 0xce: case 0xcf: {
            int w = 1 << (b - 0xcc);
            NEED(w);
            it->kind = MP_UINT;
            it->u = be(q, w);
            c->p += w;
            break;
        }
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
            int w = 1 << (b - 0xd0);
            NEED(w);
            uint64_t raw = be(q, w);
            int64_t v;
            if (w == 1) v = (int8_t)raw;
            else if (w == 2) v = (int16_t)raw;
            else if (w == 4) v = (int32_t)raw;
            else v = (int64_t)raw;
            if (v >= 0) {
                it->kind = MP_UINT;
                it->u = (uint64_t)v;
            } else {
                it->kind = MP_NINT;
                it->i = v;
            }
            c->p += w;
            break;
        }
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            NEED(1);
            it->kind = MP_EXT;
            it->len = 1u << (b - 0xd4);
            c->p += 1; /* the ext type byte */
            break;
        case 0xc7: case 0xc8: case 0xc9: {
            int w = b == 0xc7 ? 1 : b == 0xc8 ? 2 : 4;
            NEED(w + 1);
            it->kind = MP_EXT;
            it->len = (uint32_t)be(q, w);
            c->p += w + 1;
            break;
        }
        case 0xdc: case 0xdd: {
            int w = b == 0xdc ? 2 : 4;
            NEED(w);
            it->kind = MP_ARRAY;
            it->len = (uint32_t)be(q, w);
            c->p += w;
            break;
        }
        case 0xde: case 0xdf: {
            int w = b == 0xde ? 2 : 4;
            NEED(w);
            it->kind = MP_MAP;
            it->len = (uint32_t)be(q, w);
            c->p += w;
            break;
        }
        default: /* 0xc1 */
            return MP_R_RESERVED;
        }
    }
#undef NEED
    if (it->kind == MP_STR || it->kind == MP_BIN || it->kind == MP_EXT || it->kind == MP_ARRAY ||
        it->kind == MP_MAP)
        it->ptr = c->p;
    return MP_R_OK;
}

/* Limits of one decode, as the codec gives msgpack-python's unpacker. */
typedef struct {
    uint64_t str_max, bin_max, array_max, map_max, ext_max;
    bool strict_keys; /* map keys must be str or bin */
    bool refuse_ext;  /* any ext value is an error (results) */
} mp_limits;

/* Checks one complete value at the cursor (and consumes it), in msgpack-python's order: a truncated body is
 * not_msgpack before its length is compared with the limit; containers are checked at their header. */
static zvsr_decode_result mp_check(mp_cur *c, const mp_limits *lim, int depth) {
    if (depth > NESTING_MAX) return ZVSR_DECODE_NOT_MSGPACK;
    mp_item it;
    if (mp_header(c, &it) != MP_R_OK) return ZVSR_DECODE_NOT_MSGPACK;
    size_t avail = (size_t)(c->end - c->p);
    switch (it.kind) {
    case MP_STR:
    case MP_BIN:
    case MP_EXT: {
        if (it.len > avail) return ZVSR_DECODE_NOT_MSGPACK;
        uint64_t max = it.kind == MP_STR ? lim->str_max : it.kind == MP_BIN ? lim->bin_max : lim->ext_max;
        if (it.kind == MP_EXT && lim->refuse_ext) return ZVSR_DECODE_NOT_MSGPACK;
        if (it.len > max) return ZVSR_DECODE_TOO_LARGE;
        if (it.kind == MP_STR && !utf8_valid(it.ptr, it.len, NULL)) return ZVSR_DECODE_NOT_MSGPACK;
        c->p += it.len;
        return ZVSR_DECODE_OK;
    }
    case MP_ARRAY:
        if (it.len > lim->array_max) return ZVSR_DECODE_TOO_LARGE;
        for (uint32_t k = 0; k < it.len; k++) {
            zvsr_decode_result r = mp_check(c, lim, depth + 1);
            if (r != ZVSR_DECODE_OK) return r;
        }
        return ZVSR_DECODE_OK;
    case MP_MAP:
        if (it.len > lim->map_max) return ZVSR_DECODE_TOO_LARGE;
        for (uint32_t k = 0; k < it.len; k++) {
            const uint8_t *key_at = c->p;
            zvsr_decode_result r = mp_check(c, lim, depth + 1);
            if (r != ZVSR_DECODE_OK) return r;
            r = mp_check(c, lim, depth + 1);
            if (r != ZVSR_DECODE_OK) return r;
            if (lim->strict_keys) {
                uint8_t kb = *key_at;
                bool str_or_bin = (kb & 0xe0) == 0xa0 || kb == 0xd9 || kb == 0xda || kb == 0xdb ||
                                  kb == 0xc4 || kb == 0xc5 || kb == 0xc6;
                if (!str_or_bin) return ZVSR_DECODE_NOT_MSGPACK;
            }
        }
        return ZVSR_DECODE_OK;
    default:
        return ZVSR_DECODE_OK;
    }
}

/* Exactly one valid value in data[0..len). */
static zvsr_decode_result mp_check_one(const uint8_t *data, size_t len, const mp_limits *lim) {
    if (len == 0) return ZVSR_DECODE_NOT_MSGPACK;
    mp_cur c = {data, data + len};
    zvsr_decode_result r = mp_check(&c, lim, 1);
    if (r != ZVSR_DECODE_OK) return r;
    return c.p == c.end ? ZVSR_DECODE_OK : ZVSR_DECODE_NOT_MSGPACK;
}

/* Reads one value of checked input: its header in *it, and the cursor after the whole value. */
static bool mp_read(mp_cur *c, mp_item *it) {
    if (mp_header(c, it) != MP_R_OK) return false;
    uint64_t pending = 0;
    if (it->kind == MP_STR || it->kind == MP_BIN || it->kind == MP_EXT) {
        if (it->len > (size_t)(c->end - c->p)) return false;
        c->p += it->len;
    } else if (it->kind == MP_ARRAY) {
        pending = it->len;
    } else if (it->kind == MP_MAP) {
        pending = 2 * (uint64_t)it->len;
    }
    while (pending > 0) {
        mp_item sub;
        if (mp_header(c, &sub) != MP_R_OK) return false;
        pending--;
        if (sub.kind == MP_STR || sub.kind == MP_BIN || sub.kind == MP_EXT) {
            if (sub.len > (size_t)(c->end - c->p)) return false;
            c->p += sub.len;
        } else if (sub.kind == MP_ARRAY) {
            pending += sub.len;
        } else if (sub.kind == MP_MAP) {
            pending += 2 * (uint64_t)sub.len;
        }
    }
    return true;
}

static size_t mp_size(const mp_item *it, const mp_cur *after) { return (size_t)(after->p - it->start); }

static bool mp_str_is(const mp_item *it, const char *s) {
    size_t n = strlen(s);
    return it->kind == MP_STR && it->len == n && memcmp(it->ptr, s, n) == 0;
}

/* The value of str key `key` in a (checked) map; the last one if repeated (dict semantics). */
static bool mp_map_get(const mp_item *map, const uint8_t *end, const char *key, mp_item *value) {
    mp_cur c = {map->ptr, end};
    bool found = false;
    for (uint32_t k = 0; k < map->len; k++) {
        mp_item ki, vi;
        if (!mp_read(&c, &ki) || !mp_read(&c, &vi)) return false;
        if (mp_str_is(&ki, key)) {
            *value = vi;
            found = true;
        }
    }
    return found;
}

/* ====================================================================================================== */
/* client messages                                                                                         */
/* ====================================================================================================== */

const char *zvsr_decode_result_name(zvsr_decode_result result) {
    switch (result) {
    case ZVSR_DECODE_OK: return "ok";
    case ZVSR_DECODE_NOT_MSGPACK: return "not_msgpack";
    case ZVSR_DECODE_NOT_A_MAP: return "not_a_map";
    case ZVSR_DECODE_UNKNOWN_TYPE: return "unknown_type";
    case ZVSR_DECODE_UNEXPECTED_TYPE: return "unexpected_type";
    case ZVSR_DECODE_MISSING_FIELD: return "missing_field";
    case ZVSR_DECODE_UNKNOWN_FIELD: return "unknown_field";
    case ZVSR_DECODE_WRONG_TYPE: return "wrong_type";
    case ZVSR_DECODE_OUT_OF_RANGE: return "out_of_range";
    case ZVSR_DECODE_TOO_LARGE: return "too_large";
    case ZVSR_DECODE_INCONSISTENT: return "inconsistent";
    }
    return "unknown";
}

static const char *const ERROR_CODES[] = {"unavailable", "busy",   "view_change",
                                          "bad_request", "timeout", "session_expired"};

static bool known_error_code(const uint8_t *s, size_t len) {
    for (size_t k = 0; k < sizeof ERROR_CODES / sizeof *ERROR_CODES; k++)
        if (strlen(ERROR_CODES[k]) == len && memcmp(ERROR_CODES[k], s, len) == 0) return true;
    return false;
}

/* Field names after "type", per client kind. */
static const char *const *fields_of(uint64_t type, size_t *count) {
    static const char *const request[] = {"client_id", "request_number", "operation"};
    static const char *const reply[] = {"view", "client_id", "request_number", "result"};
    static const char *const redirect[] = {"view", "primary", "client_id", "request_number"};
    static const char *const error[] = {"view", "client_id", "request_number", "code", "message"};
    switch (type) {
    case ZVSR_TYPE_REQUEST: *count = 3; return request;
    case ZVSR_TYPE_REPLY: *count = 4; return reply;
    case ZVSR_TYPE_REDIRECT: *count = 4; return redirect;
    case ZVSR_TYPE_ERROR: *count = 5; return error;
    default: *count = 0; return NULL;
    }
}

typedef struct {
    bool is_str;
    const uint8_t *key;
    uint32_t key_len;
    mp_item value;
} pair;

typedef struct {
    pair pairs[CODEC_MAP_LEN_MAX];
    size_t n; /* distinct keys */
} top_map;

static const mp_item *top_get(const top_map *m, const char *key) {
    size_t n = strlen(key);
    for (size_t k = 0; k < m->n; k++)
        if (m->pairs[k].is_str && m->pairs[k].key_len == n && memcmp(m->pairs[k].key, key, n) == 0)
            return &m->pairs[k].value;
    return NULL;
}

/* The codec's _id: an unsigned 64-bit number (true, floats, nil are not numbers). */
static zvsr_decode_result field_id(const top_map *m, const char *name, uint64_t max, uint64_t *out) {
    const mp_item *v = top_get(m, name);
    if (v->kind == MP_UINT && v->u <= max) {
        *out = v->u;
        return ZVSR_DECODE_OK;
    }
    return v->kind == MP_UINT || v->kind == MP_NINT ? ZVSR_DECODE_OUT_OF_RANGE : ZVSR_DECODE_WRONG_TYPE;
}

static zvsr_decode_result field_bin(const top_map *m, const char *name, size_t max, const uint8_t **ptr,
                                    size_t *len) {
    const mp_item *v = top_get(m, name);
    if (v->kind != MP_BIN) return ZVSR_DECODE_WRONG_TYPE;
    if (v->len > max) return ZVSR_DECODE_TOO_LARGE;
    *ptr = v->ptr;
    *len = v->len;
    return ZVSR_DECODE_OK;
}

#define TRY_DECODE(expr)                                                                                     \
    do {                                                                                                     \
        zvsr_decode_result r_ = (expr);                                                                      \
        if (r_ != ZVSR_DECODE_OK) return r_;                                                                 \
    } while (0)

/* The codec's unpack_map (zvsr/wire/unpack.py) + _dispatch + one of the _decode_* functions. `want` lists
 * the kinds accepted. */
static zvsr_decode_result decode_client_kind(const uint8_t *data, size_t len, size_t size_max, bool request,
                                             zvsr_wire_message *msg) {
    memset(msg, 0, sizeof *msg);
    if (data == NULL && len) return ZVSR_DECODE_NOT_MSGPACK;
    if (len > size_max) return ZVSR_DECODE_TOO_LARGE;
    mp_limits lim = {.str_max = ERROR_MESSAGE_BYTES_MAX,
                     .bin_max = ZVSR_RESULT_BYTES_MAX,
                     .array_max = len,
                     .map_max = CODEC_MAP_LEN_MAX,
                     .ext_max = 0,
                     .strict_keys = true,
                     .refuse_ext = false};
    TRY_DECODE(mp_check_one(data, len, &lim));
    mp_cur c = {data, data + len};
    mp_item top;
    if (!mp_read(&c, &top)) return ZVSR_DECODE_NOT_MSGPACK; /* cannot happen after mp_check_one */
    if (top.kind != MP_MAP) return ZVSR_DECODE_NOT_A_MAP;

    top_map m = {.n = 0};
    c.p = top.ptr;
    for (uint32_t k = 0; k < top.len; k++) {
        mp_item ki, vi;
        if (!mp_read(&c, &ki) || !mp_read(&c, &vi)) return ZVSR_DECODE_NOT_MSGPACK;
        pair p = {.is_str = ki.kind == MP_STR, .key = ki.ptr, .key_len = ki.len, .value = vi};
        size_t at = m.n;
        for (size_t j = 0; j < m.n; j++)
            if (m.pairs[j].is_str == p.is_str && m.pairs[j].key_len == p.key_len &&
                memcmp(m.pairs[j].key, p.key, p.key_len) == 0)
                at = j; /* a repeated key: the last value wins, as in a Python dict */
        m.pairs[at] = p;
        if (at == m.n) m.n++;
    }
    /* As the server's decoder (unpack_map): decoders differ on which of two equal keys wins, so a map that
     * names a key twice is refused, never guessed at. */
    if (m.n != top.len) return ZVSR_DECODE_INCONSISTENT;

    const mp_item *type = top_get(&m, "type");
    if (type == NULL) return ZVSR_DECODE_MISSING_FIELD;
    if (type->kind != MP_UINT && type->kind != MP_NINT) return ZVSR_DECODE_WRONG_TYPE;
    if (type->kind == MP_NINT) return ZVSR_DECODE_UNKNOWN_TYPE;
    uint64_t t = type->u;
    bool mine = request ? t == ZVSR_TYPE_REQUEST : (t >= ZVSR_TYPE_REPLY && t <= ZVSR_TYPE_ERROR);
    if (!mine) {
        bool exists = (t >= 1 && t <= REPLICA_TYPE_MAX) ||
                      (t >= ZVSR_TYPE_REQUEST && t <= ZVSR_TYPE_ERROR);
        return exists ? ZVSR_DECODE_UNEXPECTED_TYPE : ZVSR_DECODE_UNKNOWN_TYPE;
    }

    size_t count;
    const char *const *names = fields_of(t, &count);
    for (size_t k = 0; k < count; k++)
        if (top_get(&m, names[k]) == NULL) return ZVSR_DECODE_MISSING_FIELD;
    if (m.n != count + 1) return ZVSR_DECODE_UNKNOWN_FIELD;

    msg->type = (zvsr_type)t;
    switch (t) {
    case ZVSR_TYPE_REQUEST:
        TRY_DECODE(field_id(&m, "client_id", UINT64_MAX, &msg->client_id));
        TRY_DECODE(field_id(&m, "request_number", UINT64_MAX, &msg->request_number));
        TRY_DECODE(field_bin(&m, "operation", ZVSR_OPERATION_BYTES_MAX, &msg->payload, &msg->payload_len));
        break;
    case ZVSR_TYPE_REPLY:
        TRY_DECODE(field_id(&m, "view", UINT64_MAX, &msg->view));
        TRY_DECODE(field_id(&m, "client_id", UINT64_MAX, &msg->client_id));
        TRY_DECODE(field_id(&m, "request_number", UINT64_MAX, &msg->request_number));
        TRY_DECODE(field_bin(&m, "result", ZVSR_RESULT_BYTES_MAX, &msg->payload, &msg->payload_len));
        break;
    case ZVSR_TYPE_REDIRECT:
        TRY_DECODE(field_id(&m, "view", UINT64_MAX, &msg->view));
        TRY_DECODE(field_id(&m, "primary", ZVSR_REPLICA_ID_MAX, &msg->primary));
        TRY_DECODE(field_id(&m, "client_id", UINT64_MAX, &msg->client_id));
        TRY_DECODE(field_id(&m, "request_number", UINT64_MAX, &msg->request_number));
        break;
    case ZVSR_TYPE_ERROR: {
        const mp_item *code = top_get(&m, "code");
        const mp_item *text = top_get(&m, "message");
        if (code->kind != MP_STR) return ZVSR_DECODE_WRONG_TYPE;
        if (!known_error_code(code->ptr, code->len)) return ZVSR_DECODE_OUT_OF_RANGE;
        if (text->kind != MP_STR) return ZVSR_DECODE_WRONG_TYPE;
        size_t chars = 0;
        if (!utf8_valid(text->ptr, text->len, &chars)) return ZVSR_DECODE_NOT_MSGPACK;
        if (chars > ZVSR_ERROR_MESSAGE_CHARS_MAX) return ZVSR_DECODE_TOO_LARGE;
        TRY_DECODE(field_id(&m, "view", UINT64_MAX, &msg->view));
        TRY_DECODE(field_id(&m, "client_id", UINT64_MAX, &msg->client_id));
        TRY_DECODE(field_id(&m, "request_number", UINT64_MAX, &msg->request_number));
        msg->code = (const char *)code->ptr;
        msg->code_len = code->len;
        msg->message = (const char *)text->ptr;
        msg->message_len = text->len;
        break;
    }
    }
    return ZVSR_DECODE_OK;
}

zvsr_decode_result zvsr_decode_reply(const uint8_t *data, size_t len, zvsr_wire_message *message) {
    zvsr_wire_message scratch;
    zvsr_decode_result r = decode_client_kind(data, len, MESSAGE_BYTES_MAX, false, message ? message : &scratch);
    if (r != ZVSR_DECODE_OK && message) memset(message, 0, sizeof *message);
    return r;
}

zvsr_decode_result zvsr_decode_request(const uint8_t *data, size_t len, zvsr_wire_message *message) {
    zvsr_wire_message scratch;
    zvsr_decode_result r =
        decode_client_kind(data, len, ZVSR_REQUEST_BYTES_MAX, true, message ? message : &scratch);
    if (r != ZVSR_DECODE_OK && message) memset(message, 0, sizeof *message);
    return r;
}

static int pack_key(msgpack_packer *pk, const char *key) { return msgpack_pack_str_with_body(pk, key, strlen(key)); }

zvsr_status zvsr_encode(const zvsr_wire_message *m, zvsr_buffer *out) {
    if (m == NULL || out == NULL) return ZVSR_ERR_INVALID;
    switch (m->type) {
    case ZVSR_TYPE_REQUEST:
        if (m->payload_len > ZVSR_OPERATION_BYTES_MAX || (m->payload == NULL && m->payload_len))
            return ZVSR_ERR_INVALID;
        break;
    case ZVSR_TYPE_REPLY:
        if (m->payload_len > ZVSR_RESULT_BYTES_MAX || (m->payload == NULL && m->payload_len))
            return ZVSR_ERR_INVALID;
        break;
    case ZVSR_TYPE_REDIRECT:
        if (m->primary > ZVSR_REPLICA_ID_MAX) return ZVSR_ERR_INVALID;
        break;
    case ZVSR_TYPE_ERROR: {
        size_t chars = 0;
        if (m->code == NULL || !known_error_code((const uint8_t *)m->code, m->code_len)) return ZVSR_ERR_INVALID;
        if ((m->message == NULL && m->message_len) || m->message_len > ERROR_MESSAGE_BYTES_MAX)
            return ZVSR_ERR_INVALID;
        if (m->message_len && !utf8_valid((const uint8_t *)m->message, m->message_len, &chars))
            return ZVSR_ERR_INVALID;
        if (chars > ZVSR_ERROR_MESSAGE_CHARS_MAX) return ZVSR_ERR_INVALID;
        break;
    }
    default:
        return ZVSR_ERR_INVALID;
    }
    if (!buf_clear(out)) return ZVSR_ERR_NOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    int rc = 0;
    switch (m->type) {
    case ZVSR_TYPE_REQUEST:
        rc |= msgpack_pack_map(&pk, 4);
        rc |= pack_key(&pk, "type") | msgpack_pack_uint64(&pk, ZVSR_TYPE_REQUEST);
        rc |= pack_key(&pk, "client_id") | msgpack_pack_uint64(&pk, m->client_id);
        rc |= pack_key(&pk, "request_number") | msgpack_pack_uint64(&pk, m->request_number);
        rc |= pack_key(&pk, "operation") | msgpack_pack_bin_with_body(&pk, m->payload, m->payload_len);
        break;
    case ZVSR_TYPE_REPLY:
        rc |= msgpack_pack_map(&pk, 5);
        rc |= pack_key(&pk, "type") | msgpack_pack_uint64(&pk, ZVSR_TYPE_REPLY);
        rc |= pack_key(&pk, "view") | msgpack_pack_uint64(&pk, m->view);
        rc |= pack_key(&pk, "client_id") | msgpack_pack_uint64(&pk, m->client_id);
        rc |= pack_key(&pk, "request_number") | msgpack_pack_uint64(&pk, m->request_number);
        rc |= pack_key(&pk, "result") | msgpack_pack_bin_with_body(&pk, m->payload, m->payload_len);
        break;
    case ZVSR_TYPE_REDIRECT:
        rc |= msgpack_pack_map(&pk, 5);
        rc |= pack_key(&pk, "type") | msgpack_pack_uint64(&pk, ZVSR_TYPE_REDIRECT);
        rc |= pack_key(&pk, "view") | msgpack_pack_uint64(&pk, m->view);
        rc |= pack_key(&pk, "primary") | msgpack_pack_uint64(&pk, m->primary);
        rc |= pack_key(&pk, "client_id") | msgpack_pack_uint64(&pk, m->client_id);
        rc |= pack_key(&pk, "request_number") | msgpack_pack_uint64(&pk, m->request_number);
        break;
    case ZVSR_TYPE_ERROR:
        rc |= msgpack_pack_map(&pk, 6);
        rc |= pack_key(&pk, "type") | msgpack_pack_uint64(&pk, ZVSR_TYPE_ERROR);
        rc |= pack_key(&pk, "view") | msgpack_pack_uint64(&pk, m->view);
        rc |= pack_key(&pk, "client_id") | msgpack_pack_uint64(&pk, m->client_id);
        rc |= pack_key(&pk, "request_number") | msgpack_pack_uint64(&pk, m->request_number);
        rc |= pack_key(&pk, "code") | msgpack_pack_str_with_body(&pk, m->code, m->code_len);
        rc |= pack_key(&pk, "message") | msgpack_pack_str_with_body(&pk, m->message, m->message_len);
        break;
    }
    return rc == 0 ? ZVSR_OK : ZVSR_ERR_NOMEM;
}

/* ====================================================================================================== */
/* values: checking and rendering                                                                          */
/* ====================================================================================================== */

/* Results and values: any msgpack except ext, any map keys (the Python client's strict_map_key=False). */
static zvsr_decode_result check_value(const uint8_t *data, size_t len) {
    mp_limits lim = {.str_max = len, .bin_max = len, .array_max = len, .map_max = len,
                     .ext_max = 0, .strict_keys = false, .refuse_ext = true};
    return mp_check_one(data, len, &lim);
}

/* Python's repr of a float: shortest round-trip digits; fixed notation for exponents -4..15 (with ".0"
 * when integral), scientific otherwise ("1e+16", "1.5e-07"). */
static void format_double(char *out, size_t cap, double d) {
    if (isnan(d)) {
        snprintf(out, cap, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(out, cap, d > 0 ? "Infinity" : "-Infinity");
        return;
    }
    char sci[40];
    for (int precision = 0; precision <= 16; precision++) {
        snprintf(sci, sizeof sci, "%.*e", precision, d);
        if (strtod(sci, NULL) == d) break;
    }
    /* sci: [-]D[.DDD]e(+|-)XX */
    bool negative = sci[0] == '-';
    const char *s = sci + (negative ? 1 : 0);
    char digits[24];
    size_t nd = 0;
    const char *e = strchr(s, 'e');
    for (const char *p = s; p < e && nd < sizeof digits - 1; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    digits[nd] = 0;
    int exponent = atoi(e + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    char body[64];
    size_t b = 0;
    if (exponent >= -4 && exponent < 16) {
        if (exponent < 0) {
            b += (size_t)snprintf(body + b, sizeof body - b, "0.");
            for (int k = 0; k < -exponent - 1; k++) body[b++] = '0';
            for (size_t k = 0; k < nd; k++) body[b++] = digits[k];
        } else {
            size_t int_digits = (size_t)exponent + 1;
            for (size_t k = 0; k < int_digits; k++) body[b++] = k < nd ? digits[k] : '0';
            body[b++] = '.';
            if (nd > int_digits)
                for (size_t k = int_digits; k < nd; k++) body[b++] = digits[k];
            else
                body[b++] = '0';
        }
        body[b] = 0;
    } else {
        body[b++] = digits[0];
        if (nd > 1) {
            body[b++] = '.';
            for (size_t k = 1; k < nd; k++) body[b++] = digits[k];
        }
        snprintf(body + b, sizeof body - b, "e%c%02d", exponent < 0 ? '-' : '+', abs(exponent));
    }
    snprintf(out, cap, "%s%s", negative ? "-" : "", body);
}

/* A JSON string, escaped as Python's json.dumps(ensure_ascii=False) does. */
static bool render_json_string(zvsr_buffer *out, const uint8_t *s, size_t len) {
    if (!buf_append(out, "\"", 1)) return false;
    size_t run = 0;
    for (size_t k = 0; k < len; k++) {
        uint8_t ch = s[k];
        const char *esc = NULL;
        char u[8];
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default:
            if (ch < 0x20) {
                snprintf(u, sizeof u, "\\u%04x", ch);
                esc = u;
            }
        }
        if (esc == NULL) continue;
        if (!buf_append(out, s + run, k - run) || !buf_puts(out, esc)) return false;
        run = k + 1;
    }
    return buf_append(out, s + run, len - run) && buf_append(out, "\"", 1);
}

static bool render_item(zvsr_buffer *out, mp_cur *c, int depth);

static bool render_key(zvsr_buffer *out, mp_cur *c, int depth) {
    const uint8_t *at = c->p;
    mp_item it;
    if (mp_header(c, &it) != MP_R_OK) return false;
    if (it.kind == MP_STR) {
        c->p += it.len;
        return render_json_string(out, it.ptr, it.len);
    }
    /* a non-str key: the JSON string of its rendering (what json.dumps does for int, bool, None) */
    c->p = at;
    zvsr_buffer tmp = ZVSR_BUFFER_INIT;
    bool ok = render_item(&tmp, c, depth) && render_json_string(out, tmp.data, tmp.len);
    zvsr_buffer_free(&tmp);
    return ok;
}

static bool render_item(zvsr_buffer *out, mp_cur *c, int depth) {
    if (depth > NESTING_MAX) return false;
    mp_item it;
    if (mp_header(c, &it) != MP_R_OK) return false;
    char num[96]; /* a rendered number: body (< 64) and a sign */
    switch (it.kind) {
    case MP_NIL: return buf_puts(out, "null");
    case MP_BOOL: return buf_puts(out, it.boolean ? "true" : "false");
    case MP_UINT: snprintf(num, sizeof num, "%" PRIu64, it.u); return buf_puts(out, num);
    case MP_NINT: snprintf(num, sizeof num, "%" PRId64, it.i); return buf_puts(out, num);
    case MP_FLOAT: format_double(num, sizeof num, it.f); return buf_puts(out, num);
    case MP_STR:
        if (it.len > (size_t)(c->end - c->p)) return false;
        c->p += it.len;
        return render_json_string(out, it.ptr, it.len);
    case MP_BIN: {
        if (it.len > (size_t)(c->end - c->p)) return false;
        c->p += it.len;
        static const char hex[] = "0123456789abcdef";
        if (!buf_puts(out, "{\"$bin\": \"") || !buf_reserve(out, 2 * (size_t)it.len)) return false;
        for (uint32_t k = 0; k < it.len; k++) {
            out->data[out->len++] = (uint8_t)hex[it.ptr[k] >> 4];
            out->data[out->len++] = (uint8_t)hex[it.ptr[k] & 15];
        }
        out->data[out->len] = 0;
        return buf_puts(out, "\"}");
    }
    case MP_ARRAY:
        if (!buf_puts(out, "[")) return false;
        for (uint32_t k = 0; k < it.len; k++) {
            if ((k && !buf_puts(out, ", ")) || !render_item(out, c, depth + 1)) return false;
        }
        return buf_puts(out, "]");
    case MP_MAP:
        if (!buf_puts(out, "{")) return false;
        for (uint32_t k = 0; k < it.len; k++) {
            if ((k && !buf_puts(out, ", ")) || !render_key(out, c, depth + 1) || !buf_puts(out, ": ") ||
                !render_item(out, c, depth + 1))
                return false;
        }
        return buf_puts(out, "}");
    case MP_EXT:
        return false;
    }
    return false;
}

zvsr_status zvsr_render(const uint8_t *value, size_t len, zvsr_buffer *out) {
    if (out == NULL || (value == NULL && len)) return ZVSR_ERR_INVALID;
    if (!buf_clear(out)) return ZVSR_ERR_NOMEM;
    if (check_value(value, len) != ZVSR_DECODE_OK) return ZVSR_ERR_PROTOCOL;
    mp_cur c = {value, value + len};
    if (!render_item(out, &c, 1)) {
        buf_clear(out);
        return ZVSR_ERR_NOMEM; /* the input was checked: only memory can fail */
    }
    return ZVSR_OK;
}

/* A checked value as zvsr_get shows it: nil -> empty, str -> its bytes, else the rendering. */
static zvsr_status value_text(const mp_item *it, size_t size, zvsr_buffer *out, zvsr_value_kind *kind) {
    zvsr_value_kind k = it->kind == MP_NIL ? ZVSR_VALUE_NIL : it->kind == MP_STR ? ZVSR_VALUE_STR : ZVSR_VALUE_OTHER;
    if (kind) *kind = k;
    if (out == NULL) return ZVSR_OK;
    if (!buf_clear(out)) return ZVSR_ERR_NOMEM;
    if (k == ZVSR_VALUE_STR) return buf_append(out, it->ptr, it->len) ? ZVSR_OK : ZVSR_ERR_NOMEM;
    if (k == ZVSR_VALUE_OTHER) return zvsr_render(it->start, size, out);
    return ZVSR_OK;
}

/* ====================================================================================================== */
/* coordination operations                                                                                 */
/* ====================================================================================================== */

typedef struct {
    const char *name;
    enum { F_STR, F_RAW, F_NIL, F_INT, F_UINT } kind;
    const char *str;
    const uint8_t *raw;
    size_t raw_len;
    int64_t integer;
    uint64_t unsigned_integer;
} op_field;

static zvsr_status build_op(zvsr_buffer *out, const char *op, const op_field *fields, size_t n) {
    if (out == NULL) return ZVSR_ERR_INVALID;
    for (size_t k = 0; k < n; k++) {
        if (fields[k].kind == F_STR && !cstr_utf8(fields[k].str)) return ZVSR_ERR_INVALID;
        if (fields[k].kind == F_RAW &&
            (fields[k].raw == NULL || check_value(fields[k].raw, fields[k].raw_len) != ZVSR_DECODE_OK))
            return ZVSR_ERR_INVALID;
    }
    if (!buf_clear(out)) return ZVSR_ERR_NOMEM;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, buf_write);
    int rc = msgpack_pack_map(&pk, n + 1);
    rc |= pack_key(&pk, "op") | pack_key(&pk, op);
    for (size_t k = 0; k < n && rc == 0; k++) {
        rc |= pack_key(&pk, fields[k].name);
        switch (fields[k].kind) {
        case F_STR: rc |= pack_key(&pk, fields[k].str); break;
        case F_RAW: rc |= buf_append(out, fields[k].raw, fields[k].raw_len) ? 0 : -1; break;
        case F_NIL: rc |= msgpack_pack_nil(&pk); break;
        case F_INT: rc |= msgpack_pack_int64(&pk, fields[k].integer); break;
        case F_UINT: rc |= msgpack_pack_uint64(&pk, fields[k].unsigned_integer); break;
        }
    }
    if (rc != 0) return ZVSR_ERR_NOMEM;
    if (out->len > ZVSR_OPERATION_BYTES_MAX) return ZVSR_ERR_BAD_REQUEST;
    return ZVSR_OK;
}

#define STR_FIELD(n, s) {.name = (n), .kind = F_STR, .str = (s)}
#define UINT_FIELD(n, u) {.name = (n), .kind = F_UINT, .unsigned_integer = (u)}

zvsr_status zvsr_op_get(zvsr_buffer *out, const char *key) {
    op_field f[] = {STR_FIELD("key", key)};
    return build_op(out, "get", f, 1);
}

zvsr_status zvsr_op_put(zvsr_buffer *out, const char *key, const char *value) {
    op_field f[] = {STR_FIELD("key", key), STR_FIELD("value", value)};
    return build_op(out, "put", f, 2);
}

zvsr_status zvsr_op_put_raw(zvsr_buffer *out, const char *key, const uint8_t *value, size_t value_len) {
    op_field f[] = {STR_FIELD("key", key), {.name = "value", .kind = F_RAW, .raw = value, .raw_len = value_len}};
    return build_op(out, "put", f, 2);
}

zvsr_status zvsr_op_del(zvsr_buffer *out, const char *key) {
    op_field f[] = {STR_FIELD("key", key)};
    return build_op(out, "delete", f, 1);
}

zvsr_status zvsr_op_incr(zvsr_buffer *out, const char *key, bool with_by, int64_t by) {
    op_field f[] = {STR_FIELD("key", key), {.name = "by", .kind = F_INT, .integer = by}};
    return build_op(out, "incr", f, with_by ? 2 : 1);
}

zvsr_status zvsr_op_cas(zvsr_buffer *out, const char *key, const char *expected, const char *new_value) {
    op_field f[] = {STR_FIELD("key", key),
                    expected ? (op_field)STR_FIELD("expected", expected)
                             : (op_field){.name = "expected", .kind = F_NIL},
                    STR_FIELD("new", new_value)};
    return build_op(out, "cas", f, 3);
}

zvsr_status zvsr_op_cas_raw(zvsr_buffer *out, const char *key, const uint8_t *expected, size_t expected_len,
                            const uint8_t *new_value, size_t new_len) {
    op_field f[] = {STR_FIELD("key", key),
                    {.name = "expected", .kind = F_RAW, .raw = expected, .raw_len = expected_len},
                    {.name = "new", .kind = F_RAW, .raw = new_value, .raw_len = new_len}};
    return build_op(out, "cas", f, 3);
}

zvsr_status zvsr_op_lock(zvsr_buffer *out, const char *name, const char *owner) {
    op_field f[] = {STR_FIELD("name", name), STR_FIELD("owner", owner)};
    return build_op(out, "lock", f, 2);
}

zvsr_status zvsr_op_unlock(zvsr_buffer *out, const char *name, const char *owner) {
    op_field f[] = {STR_FIELD("name", name), STR_FIELD("owner", owner)};
    return build_op(out, "unlock", f, 2);
}

zvsr_status zvsr_op_put_with_lease(zvsr_buffer *out, const char *key, const char *value, uint64_t lease) {
    op_field f[] = {STR_FIELD("key", key), STR_FIELD("value", value), UINT_FIELD("lease", lease)};
    return build_op(out, "put", f, 3);
}

zvsr_status zvsr_op_lock_with_lease(zvsr_buffer *out, const char *name, const char *owner, uint64_t lease) {
    op_field f[] = {STR_FIELD("name", name), STR_FIELD("owner", owner), UINT_FIELD("lease", lease)};
    return build_op(out, "lock", f, 3);
}

zvsr_status zvsr_op_lease_grant(zvsr_buffer *out, uint64_t ttl_ms, uint64_t lock_delay_ms) {
    op_field f[] = {UINT_FIELD("ttl_ms", ttl_ms), UINT_FIELD("lock_delay_ms", lock_delay_ms)};
    return build_op(out, "lease_grant", f, lock_delay_ms ? 2 : 1); /* 0 is the app's default: not sent */
}

zvsr_status zvsr_op_lease_keepalive(zvsr_buffer *out, uint64_t lease) {
    op_field f[] = {UINT_FIELD("lease", lease)};
    return build_op(out, "lease_keepalive", f, 1);
}

zvsr_status zvsr_op_lease_revoke(zvsr_buffer *out, uint64_t lease) {
    op_field f[] = {UINT_FIELD("lease", lease)};
    return build_op(out, "lease_revoke", f, 1);
}

/* ====================================================================================================== */
/* the client                                                                                              */
/* ====================================================================================================== */

const char *zvsr_status_name(zvsr_status status) {
    switch (status) {
    case ZVSR_OK: return "ok";
    case ZVSR_ERR_UNAVAILABLE: return "unavailable";
    case ZVSR_ERR_BUSY: return "busy";
    case ZVSR_ERR_BAD_REQUEST: return "bad_request";
    case ZVSR_ERR_TIMEOUT: return "timeout";
    case ZVSR_ERR_APP: return "app_error";
    case ZVSR_ERR_PROTOCOL: return "protocol_error";
    case ZVSR_ERR_NOMEM: return "no_memory";
    case ZVSR_ERR_INVALID: return "invalid_argument";
    case ZVSR_ERR_ZMQ: return "zmq_error";
    case ZVSR_ERR_SESSION_EXPIRED: return "session_expired";
    }
    return "unknown";
}

struct zvsr_client {
    void *context;
    bool own_context;
    void **sockets; /* direct: in member order — sockets[k] is replica ids[k] */
    zmq_pollitem_t *items;
    size_t n;
    bool direct;
    bool follow;              /* direct without CurveZMQ: follow reconfigurations (status answers) */
    uint64_t ids[ZVSR_REPLICAS_MAX];
    uint64_t epoch;           /* of the configuration addressed (0: the endpoints as given) */
    uint64_t start_view;      /* its first view: the primary of view v is sockets[(v - start_view) mod n] */
    int64_t next_ask_ns;      /* no status query round before this */
    int timeout_ms;
    int retry_ticks, retry_max_ticks; /* direct: the re-send period and its cap */
    int quiet_ticks;                  /* via proxies: CLIENT_PROXY_QUIET_MS */
    size_t relay;                     /* via proxies: the proxy the last request went to (and the next goes to first) */
    uint64_t client_id;      /* the session id once registered; before, the register's random nonce */
    uint64_t request_number; /* the last one used */
    bool registered;         /* the session is registered through the log (docs/protocol.md §5) */
    uint64_t view;           /* the highest seen */
    uint64_t prng;
    zvsr_buffer wire;   /* the outstanding request, encoded */
    zvsr_buffer op;     /* operations built by the helpers */
    zvsr_buffer result; /* results fetched by the helpers */
    char message[MESSAGE_CAP];
    char app_error[128];
};

static _Thread_local char new_client_error[512];

const char *zvsr_last_message(const zvsr_client *client) { return client ? client->message : new_client_error; }
const char *zvsr_app_error(const zvsr_client *client) { return client ? client->app_error : ""; }
uint64_t zvsr_client_id(const zvsr_client *client) { return client ? client->client_id : 0; }
uint64_t zvsr_client_request_number(const zvsr_client *client) { return client ? client->request_number : 0; }
uint64_t zvsr_client_view(const zvsr_client *client) { return client ? client->view : 0; }
uint64_t zvsr_client_epoch(const zvsr_client *client) { return client ? client->epoch : 0; }

static void set_message(zvsr_client *c, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void set_message(zvsr_client *c, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(c->message, sizeof c->message, format, args);
    va_end(args);
}

static zvsr_status new_failed(zvsr_status status, const char *format, ...) __attribute__((format(printf, 2, 3)));
static zvsr_status new_failed(zvsr_status status, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(new_client_error, sizeof new_client_error, format, args);
    va_end(args);
    return status;
}

static bool random_u64(uint64_t *out) {
    uint8_t bytes[8];
    size_t got = 0;
    while (got < sizeof bytes) {
        ssize_t n = getrandom(bytes + got, sizeof bytes - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        got += (size_t)n;
    }
    if (got < sizeof bytes) { /* no getrandom (old kernel, seccomp): /dev/urandom */
        int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
        if (fd < 0) return false;
        got = 0;
        while (got < sizeof bytes) {
            ssize_t n = read(fd, bytes + got, sizeof bytes - got);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) break;
            got += (size_t)n;
        }
        close(fd);
        if (got < sizeof bytes) return false;
    }
    memcpy(out, bytes, sizeof bytes);
    return true;
}

/* splitmix64: retry jitter and the proxy shuffle only */
static uint64_t prng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t prng_below(uint64_t *state, uint64_t bound) { return bound ? prng_next(state) % bound : 0; }

void zvsr_options_init(zvsr_options *options) {
    if (options == NULL) return;
    memset(options, 0, sizeof *options);
    options->timeout_ms = ZVSR_DEFAULT_TIMEOUT_MS;
}

static bool z85_key_valid(const char *key) {
    if (key == NULL || strlen(key) != 40) return false;
    uint8_t decoded[32];
    return zmq_z85_decode(decoded, key) != NULL;
}

void zvsr_client_free(zvsr_client *client) {
    if (client == NULL) return;
    for (size_t k = 0; k < client->n; k++)
        if (client->sockets[k]) zmq_close(client->sockets[k]);
    if (client->own_context && client->context) zmq_ctx_term(client->context);
    free(client->sockets);
    free(client->items);
    zvsr_buffer_free(&client->wire);
    zvsr_buffer_free(&client->op);
    zvsr_buffer_free(&client->result);
    free(client);
}

static int set_int(void *socket, int option, int value) {
    return zmq_setsockopt(socket, option, &value, sizeof value);
}

/* A DEALER connected to `endpoint` with the client's options (CurveZMQ keys from `curve`, if not NULL) in *out;
 * on failure *out is NULL, or the socket if it was created (the caller closes it). */
static zvsr_status open_socket(zvsr_client *c, const char *endpoint, const zvsr_options *curve, void **out) {
    void *s = zmq_socket(c->context, ZMQ_DEALER);
    *out = s;
    if (s == NULL) return new_failed(ZVSR_ERR_ZMQ, "zmq_socket: %s", zmq_strerror(errno));
    int64_t maxmsg = ZVSR_REPLY_BYTES_MAX;
    /* Via proxies, ZMQ_IMMEDIATE: a send to a proxy with no connection up is refused at once, which is how
     * the client knows that proxy is gone and moves to the next (relay_round); when every proxy refuses,
     * the send is tried again every tick, so a new client's first request leaves as soon as a connection is
     * up. Direct to replicas, no ZMQ_IMMEDIATE: a request waits in the queue until the connection is up,
     * instead of being refused and retried a retry period later; a dead endpoint's queue is bounded by
     * SNDHWM. (As the Python client, zvsr/client.py.) */
    if (set_int(s, ZMQ_LINGER, 0) || set_int(s, ZMQ_SNDHWM, CLIENT_SNDHWM) ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) ||
        set_int(s, ZMQ_HEARTBEAT_IVL, ZMTP_HEARTBEAT_IVL_MS) ||
        set_int(s, ZMQ_HEARTBEAT_TIMEOUT, ZMTP_HEARTBEAT_TIMEOUT_MS) || (!c->direct && set_int(s, ZMQ_IMMEDIATE, 1)))
        return new_failed(ZVSR_ERR_ZMQ, "zmq_setsockopt: %s", zmq_strerror(errno));
    if (curve != NULL && (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve->curve_server_key, 41) ||
                          zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve->curve_public_key, 41) ||
                          zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve->curve_secret_key, 41)))
        return new_failed(ZVSR_ERR_INVALID, "CurveZMQ keys refused: %s", zmq_strerror(errno));
    if (zmq_connect(s, endpoint) != 0) {
        int e = errno;
        return new_failed(e == ENOMEM ? ZVSR_ERR_NOMEM : ZVSR_ERR_INVALID, "cannot connect to %s: %s", endpoint,
                          zmq_strerror(e));
    }
    return ZVSR_OK;
}

zvsr_status zvsr_client_new(const char *const endpoints[], size_t n, const zvsr_options *options,
                            zvsr_client **out) {
    new_client_error[0] = 0;
    if (out == NULL) return new_failed(ZVSR_ERR_INVALID, "no place for the client");
    *out = NULL;
    zvsr_options defaults;
    zvsr_options_init(&defaults);
    const zvsr_options *o = options ? options : &defaults;
    if (endpoints == NULL || n == 0) return new_failed(ZVSR_ERR_INVALID, "no endpoints");
    if (o->direct && n > ZVSR_REPLICAS_MAX)
        return new_failed(ZVSR_ERR_INVALID, "%zu replicas: a cluster has at most %d", n, ZVSR_REPLICAS_MAX);
    for (size_t k = 0; k < n; k++)
        if (endpoints[k] == NULL || strstr(endpoints[k], "://") == NULL)
            return new_failed(ZVSR_ERR_INVALID, "endpoint %zu is not a ZeroMQ endpoint like tcp://host:port: %s",
                              k, endpoints[k] ? endpoints[k] : "(null)");
    int keys = (o->curve_server_key != NULL) + (o->curve_public_key != NULL) + (o->curve_secret_key != NULL);
    if (keys != 0 && keys != 3)
        return new_failed(ZVSR_ERR_INVALID, "CurveZMQ needs all three keys: server, public and secret");
    if (keys == 3) {
        if (!zmq_has("curve")) return new_failed(ZVSR_ERR_INVALID, "this libzmq was built without CurveZMQ");
        const char *names[] = {"server", "public", "secret"};
        const char *values[] = {o->curve_server_key, o->curve_public_key, o->curve_secret_key};
        for (int k = 0; k < 3; k++)
            if (!z85_key_valid(values[k]))
                return new_failed(ZVSR_ERR_INVALID, "the CurveZMQ %s key is not 40 characters of Z85", names[k]);
    }

    zvsr_client *c = calloc(1, sizeof *c);
    if (c == NULL) return new_failed(ZVSR_ERR_NOMEM, "out of memory");
    size_t cap = o->direct ? ZVSR_REPLICAS_MAX : n; /* direct: room for any configuration learnt later */
    c->sockets = calloc(cap, sizeof *c->sockets);
    c->items = calloc(cap, sizeof *c->items);
    if (c->sockets == NULL || c->items == NULL) {
        zvsr_client_free(c);
        return new_failed(ZVSR_ERR_NOMEM, "out of memory");
    }
    c->direct = o->direct;
    c->follow = o->direct && keys == 0; /* CurveZMQ: one server key given, so keep the replicas given */
    for (size_t k = 0; k < n && o->direct; k++) c->ids[k] = k;
    c->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : ZVSR_DEFAULT_TIMEOUT_MS;
    c->retry_ticks = DIRECT_RETRY_MS / CLIENT_TICK_MS > 0 ? DIRECT_RETRY_MS / CLIENT_TICK_MS : 1;
    c->retry_max_ticks = DIRECT_RETRY_MAX_MS / CLIENT_TICK_MS > 0 ? DIRECT_RETRY_MAX_MS / CLIENT_TICK_MS : 1;
    c->quiet_ticks = CLIENT_PROXY_QUIET_MS / CLIENT_TICK_MS > 0 ? CLIENT_PROXY_QUIET_MS / CLIENT_TICK_MS : 1;
    uint64_t seed = 0;
    if (!random_u64(&c->client_id) || !random_u64(&seed) || c->client_id == 0) {
        zvsr_client_free(c);
        return new_failed(ZVSR_ERR_INVALID, "no random source (getrandom, /dev/urandom) for the client_id");
    }
    c->prng = seed;

    if (o->zmq_context) {
        c->context = o->zmq_context;
    } else {
        c->context = zmq_ctx_new();
        c->own_context = true;
        if (c->context == NULL) {
            int e = errno;
            zvsr_client_free(c);
            return new_failed(ZVSR_ERR_ZMQ, "zmq_ctx_new: %s", zmq_strerror(e));
        }
    }

    /* Proxies are interchangeable: shuffle them once per client to spread load (as the Python client).
     * Replicas keep index order: replica i is the primary of views i, i + n, ... (until a reconfiguration). */
    size_t *order = malloc(n * sizeof *order);
    if (order == NULL) {
        zvsr_client_free(c);
        return new_failed(ZVSR_ERR_NOMEM, "out of memory");
    }
    for (size_t k = 0; k < n; k++) order[k] = k;
    if (!c->direct)
        for (size_t k = n - 1; k > 0; k--) {
            size_t j = (size_t)prng_below(&c->prng, k + 1);
            size_t t = order[k];
            order[k] = order[j];
            order[j] = t;
        }

    zvsr_status status = ZVSR_OK;
    for (size_t k = 0; k < n && status == ZVSR_OK; k++) {
        status = open_socket(c, endpoints[order[k]], keys == 3 ? o : NULL, &c->sockets[k]);
        if (c->sockets[k] == NULL) break;
        c->n = k + 1;
        c->items[k].socket = c->sockets[k];
        c->items[k].events = ZMQ_POLLIN;
    }
    free(order);
    if (status != ZVSR_OK) {
        zvsr_client_free(c);
        return status;
    }
    *out = c;
    return ZVSR_OK;
}

/* --- one call: the sans-IO sessions of zvsr/protocol/client_session.py plus zvsr/runtime/outcome.py ---------
 *
 * Direct to the replicas, a call is a ClientSession: the request goes to the primary of the highest view seen,
 * follows Redirects, and is re-sent to every replica on a backing-off timer and shortly after a "not now" Error.
 *
 * Via proxies, a call is a RelaySession. A proxy runs its own session toward the replicas and answers every
 * request it holds by its own deadline, so the client keeps only its deadline: it sends the request to one
 * proxy (the one the last request went to) and sends the *same* (client_id, request_number) again only when
 * that proxy cannot answer, always to the next proxy:
 *   - the send is refused (ZMQ_IMMEDIATE: no connection to that proxy): the next proxy at once; when every
 *     proxy refused, the round is tried again on the next tick (a local attempt: nothing on the network);
 *   - the proxy answered an Error other than a final one (timeout, unavailable, busy, ...): its session ended
 *     without a result; after RETRY_AFTER_ERROR_TICKS, once, to the next proxy;
 *   - nothing came back for CLIENT_PROXY_QUIET_MS after the last send (a proxy that restarted forgot the
 *     request in flight, and nothing reports that): the next proxy (with one proxy, the same one), and again
 *     after each further quiet period.
 * bad_request and session_expired end the call; so does the client's deadline. */

typedef struct {
    uint64_t number;
    bool done;
    zvsr_status status;
    zvsr_buffer *result;
    /* ticks */
    int elapsed, deadline;
    /* direct (ClientSession): the re-send timer */
    int after, ticks, backoffs;
    bool retry_running;
    /* via proxies (RelaySession): since the last send, and since an Error answer; every proxy refused */
    int quiet, pause;
    bool quiet_running, pause_running, connect_wait;
    /* attempts (outcome.py): sends that left and answers that refused one */
    uint64_t sent, refused;
    bool have_error;
    char error_code[16];
    char error_message[ERROR_MESSAGE_BYTES_MAX + 1];
} call;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void send_to(zvsr_client *c, call *k, size_t index) {
    if (zmq_send(c->sockets[index], c->wire.data, c->wire.len, ZMQ_DONTWAIT) >= 0) k->sent++;
    /* EAGAIN: that endpoint's queue is full; this attempt is lost, a later one may not be */
}

static void broadcast(zvsr_client *c, call *k) {
    for (size_t i = 0; i < c->n; i++) send_to(c, k, i);
}

/* Via proxies: one round of sending, from proxy `first` on. A refused send (no connection to that proxy) never
 * left, so the next proxy is tried at once; when all refused, the next tick starts a new round. The quiet period
 * counts from the last send, and a send ends any pause after an Error answer. */
static void relay_round(zvsr_client *c, call *k, size_t first) {
    k->connect_wait = true;
    for (size_t step = 0; step < c->n; step++) {
        size_t index = (first + step) % c->n;
        c->relay = index;
        if (zmq_send(c->sockets[index], c->wire.data, c->wire.len, ZMQ_DONTWAIT) >= 0) {
            k->sent++;
            k->connect_wait = false;
            break;
        }
    }
    k->pause_running = false;
    k->quiet_running = true;
    k->quiet = 0;
}

/* --- following reconfiguration (direct; docs/clients.md, "Following reconfiguration") -------------------------
 *
 * The replicas given are ids 0..n-1 of the first configuration, from view 0. A Redirect naming a replica the
 * client cannot place (an id it does not address, or not the one its configuration makes primary of that
 * view), or a retry round to every replica, sends the status query {"type": 30} to every replica addressed — at
 * most once per CLIENT_MEMBERSHIP_ASK_MS. An answer {"type": 31, "membership": {"epoch", "start_view",
 * "members": [{"id", "client", ...}, ...]}, ...} of a later epoch than the one addressed replaces the sockets:
 * kept members keep theirs, new ones are connected, departed ones closed; the request in flight goes to the
 * new primary at once. */

static size_t primary_index(const zvsr_client *c, uint64_t view) {
    uint64_t since = view >= c->start_view ? view - c->start_view : 0; /* views never go below start_view */
    return (size_t)(since % c->n);
}

static void ask_configuration(zvsr_client *c) {
    static const uint8_t query[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 30}; /* {"type": 30} */
    if (!c->follow) return;
    int64_t now = now_ns();
    if (now < c->next_ask_ns) return;
    c->next_ask_ns = now + (int64_t)CLIENT_MEMBERSHIP_ASK_MS * 1000000LL;
    for (size_t i = 0; i < c->n; i++) zmq_send(c->sockets[i], query, sizeof query, ZMQ_DONTWAIT); /* EAGAIN: lost */
}

/* Whether a Redirect to `primary` in `view` fits the configuration addressed. */
static bool places(const zvsr_client *c, uint64_t view, uint64_t primary) {
    return c->ids[primary_index(c, view)] == primary;
}

typedef struct {
    uint64_t epoch, start_view;
    size_t n;
    uint64_t ids[ZVSR_REPLICAS_MAX];
    char clients[ZVSR_REPLICAS_MAX][ENDPOINT_BYTES_MAX + 1];
} configuration;

/* The configuration in a status answer, or false if `data` is not one or its membership does not read. */
static bool read_status_answer(const uint8_t *data, size_t len, configuration *out) {
    const mp_limits lim = {.str_max = len, .bin_max = len, .array_max = len, .map_max = len, .ext_max = len};
    if (mp_check_one(data, len, &lim) != ZVSR_DECODE_OK) return false;
    mp_cur cur = {data, data + len};
    const uint8_t *end = data + len;
    mp_item top, type, membership, epoch, start_view, members;
    if (!mp_read(&cur, &top) || top.kind != MP_MAP) return false;
    if (!mp_map_get(&top, end, "type", &type) || type.kind != MP_UINT || type.u != STATUS_ANSWER_TYPE) return false;
    if (!mp_map_get(&top, end, "membership", &membership) || membership.kind != MP_MAP) return false;
    if (!mp_map_get(&membership, end, "epoch", &epoch) || epoch.kind != MP_UINT) return false;
    if (!mp_map_get(&membership, end, "start_view", &start_view) || start_view.kind != MP_UINT) return false;
    if (!mp_map_get(&membership, end, "members", &members) || members.kind != MP_ARRAY) return false;
    if (members.len < 1 || members.len > ZVSR_REPLICAS_MAX) return false;
    out->epoch = epoch.u;
    out->start_view = start_view.u;
    out->n = members.len;
    mp_cur mc = {members.ptr, end};
    for (size_t k = 0; k < out->n; k++) {
        mp_item member, id, client;
        if (!mp_read(&mc, &member) || member.kind != MP_MAP) return false;
        if (!mp_map_get(&member, end, "id", &id) || id.kind != MP_UINT) return false;
        if (!mp_map_get(&member, end, "client", &client) || client.kind != MP_STR) return false;
        if (client.len > ENDPOINT_BYTES_MAX || memchr(client.ptr, 0, client.len) != NULL) return false;
        for (size_t j = 0; j < k; j++)
            if (out->ids[j] == id.u) return false; /* a member twice: not a configuration */
        out->ids[k] = id.u;
        memcpy(out->clients[k], client.ptr, client.len);
        out->clients[k][client.len] = 0;
        if (strstr(out->clients[k], "://") == NULL) return false;
    }
    return true;
}

/* Address configuration `g`: sockets in its member order, kept members' sockets reused. False (nothing
 * changed) if a new member's socket cannot be opened. */
static bool learn_configuration(zvsr_client *c, const configuration *g) {
    void *next[ZVSR_REPLICAS_MAX] = {0};
    bool opened[ZVSR_REPLICAS_MAX] = {0};
    for (size_t k = 0; k < g->n; k++) {
        for (size_t i = 0; i < c->n; i++)
            if (c->ids[i] == g->ids[k]) next[k] = c->sockets[i];
        if (next[k] != NULL) continue;
        opened[k] = true;
        if (open_socket(c, g->clients[k], NULL, &next[k]) != ZVSR_OK) {
            for (size_t j = 0; j <= k; j++)
                if (opened[j] && next[j] != NULL) zmq_close(next[j]);
            return false;
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        bool kept = false;
        for (size_t k = 0; k < g->n; k++) kept = kept || next[k] == c->sockets[i];
        if (!kept) zmq_close(c->sockets[i]);
    }
    for (size_t k = 0; k < g->n; k++) {
        c->sockets[k] = next[k];
        c->ids[k] = g->ids[k];
        c->items[k].socket = next[k];
        c->items[k].events = ZMQ_POLLIN;
        c->items[k].revents = 0;
    }
    c->n = g->n;
    c->epoch = g->epoch;
    c->start_view = g->start_view;
    if (c->view < g->start_view) c->view = g->start_view; /* views go on across epochs: never back */
    return true;
}

static void finish(call *k, zvsr_status status) {
    k->done = true;
    k->status = status;
    k->retry_running = false;
    k->quiet_running = false;
    k->pause_running = false;
    k->connect_wait = false;
}

static void on_answer(zvsr_client *c, call *k, const zvsr_wire_message *m) {
    if (k->done || m->client_id != c->client_id || m->request_number != k->number)
        return; /* not ours, or a late answer to an earlier request */
    switch (m->type) {
    case ZVSR_TYPE_REPLY:
        if (m->view > c->view) c->view = m->view;
        if (!buf_clear(k->result) || !buf_append(k->result, m->payload, m->payload_len)) {
            set_message(c, "out of memory for a %zu-byte result", m->payload_len);
            finish(k, ZVSR_ERR_NOMEM);
            return;
        }
        c->message[0] = 0;
        finish(k, ZVSR_OK);
        return;
    case ZVSR_TYPE_REDIRECT:
        k->refused++;
        if (!c->direct) return; /* a proxy follows Redirects itself: nothing to learn from one */
        if (!places(c, m->view, m->primary)) ask_configuration(c); /* a configuration we do not know */
        /* Only replicas in normal status redirect, so the view they name has started. Never go back. */
        if (m->view > c->view) {
            c->view = m->view;
            send_to(c, k, primary_index(c, c->view));
        }
        return;
    case ZVSR_TYPE_ERROR: {
        k->have_error = true;
        snprintf(k->error_code, sizeof k->error_code, "%.*s", (int)m->code_len, m->code);
        snprintf(k->error_message, sizeof k->error_message, "%.*s", (int)m->message_len, m->message);
        bool refusal = strcmp(k->error_code, "busy") == 0 || strcmp(k->error_code, "unavailable") == 0 ||
                       strcmp(k->error_code, "view_change") == 0;
        if (refusal) k->refused++;
        if (strcmp(k->error_code, "bad_request") == 0) {
            set_message(c, "%s", k->error_message);
            finish(k, ZVSR_ERR_BAD_REQUEST);
            return;
        }
        if (strcmp(k->error_code, "session_expired") == 0) {
            /* The session was evicted: this request never executes now, but an earlier attempt may have. The
             * next call registers a new session, under a new nonce. */
            uint64_t fresh;
            if (random_u64(&fresh) && fresh != 0) c->client_id = fresh;
            c->registered = false;
            c->request_number = 0;
            set_message(c, "%s; the outcome of this request is unknown (an earlier attempt may have executed)",
                        k->error_message);
            finish(k, ZVSR_ERR_SESSION_EXPIRED);
            return;
        }
        if (!c->direct) {
            /* The proxy's own session ended without a result, or it refused the request: ask the next proxy,
             * after a pause (a proxy refusing at once must not make us spin). */
            if (!k->pause_running) {
                k->pause_running = true;
                k->pause = 0;
            }
            return;
        }
        /* Not now: try again soon, with the same request_number (so it executes at most once). The view
         * of an Error may be one that never starts: keep ours. */
        if (k->after > RETRY_AFTER_ERROR_TICKS) k->after = RETRY_AFTER_ERROR_TICKS;
        k->ticks = 0;
        k->retry_running = true;
        return;
    }
    default:
        return;
    }
}

static zvsr_status drain(zvsr_client *c, call *k, size_t index) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    zvsr_status status = ZVSR_OK;
    while (!k->done) {
        if (zmq_msg_recv(&part, c->sockets[index], ZMQ_DONTWAIT) < 0) {
            if (errno == EINTR) continue;
            if (errno != EAGAIN) {
                set_message(c, "zmq_msg_recv: %s", zmq_strerror(errno));
                status = ZVSR_ERR_ZMQ;
            }
            break;
        }
        if (zmq_msg_more(&part)) continue; /* routing frames: the payload is the last frame (§2) */
        zvsr_wire_message m;
        if (zvsr_decode_reply(zmq_msg_data(&part), zmq_msg_size(&part), &m) != ZVSR_DECODE_OK) {
            /* A status answer (asked by ask_configuration), or not from a zvsr peer (or a bare Error: it names
             * no request); nothing to answer. */
            configuration g;
            if (c->follow && read_status_answer(zmq_msg_data(&part), zmq_msg_size(&part), &g) &&
                g.epoch > c->epoch && learn_configuration(c, &g)) {
                send_to(c, k, primary_index(c, c->view)); /* straight to the new primary */
                break; /* this socket may be closed now: the caller polls the new set */
            }
            continue;
        }
        on_answer(c, k, &m);
    }
    zmq_msg_close(&part);
    return status;
}

static void time_out(zvsr_client *c, call *k) {
    const char *target = c->direct ? "replica" : "proxy";
    if (k->sent == 0) {
        set_message(c, "no %s reachable within %d ms; the request was not executed", target, c->timeout_ms);
        finish(k, ZVSR_ERR_UNAVAILABLE);
    } else if (k->refused >= k->sent) {
        bool busy = k->have_error && strcmp(k->error_code, "busy") == 0;
        zvsr_status status = busy ? ZVSR_ERR_BUSY : ZVSR_ERR_UNAVAILABLE;
        if (k->have_error)
            set_message(c, "every attempt was refused (%s: %s); the request was not executed", k->error_code,
                        k->error_message);
        else
            set_message(c, "every attempt was refused (no primary reachable); the request was not executed");
        finish(k, status);
    } else {
        if (k->have_error && k->error_message[0])
            set_message(c,
                        "no answer within %d ms; the request may or may not have been executed "
                        "(last answer: %s: %s)",
                        c->timeout_ms, k->error_code, k->error_message);
        else
            set_message(c, "no answer within %d ms; the request may or may not have been executed", c->timeout_ms);
        finish(k, ZVSR_ERR_TIMEOUT);
    }
}

static void tick(zvsr_client *c, call *k) {
    k->elapsed++;
    if (k->retry_running) k->ticks++;
    if (k->quiet_running) k->quiet++;
    if (k->pause_running) k->pause++;
    if (k->elapsed >= k->deadline) {
        time_out(c, k);
        return;
    }
    if (!c->direct) {
        if (k->connect_wait || (k->pause_running && k->pause >= RETRY_AFTER_ERROR_TICKS) ||
            (k->quiet_running && k->quiet >= c->quiet_ticks))
            relay_round(c, k, (c->relay + 1) % c->n);
        return;
    }
    if (k->retry_running && k->ticks >= k->after) {
        /* back off: double the period up to the cap, plus up to one base period of jitter */
        if (k->backoffs < 16) k->backoffs++;
        int64_t period = (int64_t)c->retry_ticks << k->backoffs;
        if (period > c->retry_max_ticks) period = c->retry_max_ticks;
        k->after = (int)period + (int)prng_below(&c->prng, (uint64_t)c->retry_ticks + 1);
        k->ticks = 0;
        ask_configuration(c); /* no answer in time: maybe the replicas changed */
        broadcast(c, k);      /* the same request to every endpoint: whichever is primary answers */
    }
}

/* Run call `k` (its request encoded in c->wire) to its end, within `deadline` ticks. */
static zvsr_status run_call(zvsr_client *c, call *k, int deadline) {
    k->deadline = deadline < 1 ? 1 : deadline;
    const int64_t tick_ns = (int64_t)CLIENT_TICK_MS * 1000000LL;
    int64_t next_tick = now_ns() + tick_ns;
    if (c->direct)
        send_to(c, k, primary_index(c, c->view)); /* the primary of the highest view seen */
    else
        relay_round(c, k, c->relay); /* the proxy that took the last request */

    while (!k->done) {
        int64_t wait_ns = next_tick - now_ns();
        long wait_ms = wait_ns <= 0 ? 0 : (long)((wait_ns + 999999) / 1000000);
        int rc = zmq_poll(c->items, (int)c->n, wait_ms);
        if (rc < 0 && errno != EINTR) {
            set_message(c, "zmq_poll: %s", zmq_strerror(errno));
            finish(k, ZVSR_ERR_ZMQ);
            break;
        }
        uint64_t epoch = c->epoch;
        for (size_t i = 0; rc > 0 && i < c->n && !k->done && c->epoch == epoch; i++)
            if (c->items[i].revents & ZMQ_POLLIN) {
                zvsr_status s = drain(c, k, i);
                if (s != ZVSR_OK) finish(k, s);
            }
        if (k->done) break;
        /* run the ticks that are due, catching up after a stall so the deadline holds */
        int64_t now = now_ns();
        if (now >= next_tick) {
            int64_t due = (now - next_tick) / tick_ns + 1;
            next_tick += due * tick_ns;
            for (int64_t t = 0; t < due && !k->done; t++) tick(c, k);
        }
    }
    return k->status;
}

/* The session id in a register's result (any msgpack unsigned int), or 0 if it is not one. */
static uint64_t register_result(const zvsr_buffer *result) {
    if (result->len == 0) return 0;
    const uint8_t *p = result->data;
    if (p[0] < 0x80) return result->len == 1 ? p[0] : 0;
    size_t size = p[0] == 0xcc ? 1 : p[0] == 0xcd ? 2 : p[0] == 0xce ? 4 : p[0] == 0xcf ? 8 : 0;
    if (size == 0 || result->len != 1 + size) return 0;
    uint64_t value = 0;
    for (size_t i = 1; i <= size; i++) value = value << 8 | p[i];
    return value;
}

/* Register a session through the log (docs/protocol.md §5, "Registration"): a register (the nonce as
 * client_id, request_number 0, no operation), retried like any request; its Reply names the session id, which
 * becomes the client_id. Uses up to `deadline` ticks; returns the ticks it took in *elapsed. */
static zvsr_status register_session(zvsr_client *c, int deadline, int *elapsed) {
    zvsr_wire_message request = {.type = ZVSR_TYPE_REQUEST, .client_id = c->client_id, .request_number = 0};
    zvsr_status status = zvsr_encode(&request, &c->wire);
    if (status != ZVSR_OK) {
        set_message(c, "cannot encode the register (%s)", zvsr_status_name(status));
        return status;
    }
    zvsr_buffer answer = {0};
    call k = {.number = 0, .result = &answer, .after = c->retry_ticks, .retry_running = c->direct};
    status = run_call(c, &k, deadline);
    *elapsed = k.elapsed;
    uint64_t session = status == ZVSR_OK ? register_result(&answer) : 0;
    zvsr_buffer_free(&answer);
    if (status == ZVSR_OK && session == 0) {
        set_message(c, "the register's reply names no session");
        status = ZVSR_ERR_PROTOCOL;
    }
    if (status != ZVSR_OK) {
        size_t used = strlen(c->message);
        snprintf(c->message + used, sizeof c->message - used,
                 " (while registering a session: the operation was not sent)");
        return status;
    }
    c->client_id = session;
    c->request_number = 0;
    c->registered = true;
    return ZVSR_OK;
}

zvsr_status zvsr_execute(zvsr_client *c, const uint8_t *operation, size_t len, zvsr_buffer *result) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    c->message[0] = 0;
    c->app_error[0] = 0;
    if (result == NULL || (operation == NULL && len)) {
        set_message(c, "no operation or no result buffer");
        return ZVSR_ERR_INVALID;
    }
    if (len > ZVSR_OPERATION_BYTES_MAX) {
        set_message(c, "operation is %zu bytes > %d", len, ZVSR_OPERATION_BYTES_MAX);
        return ZVSR_ERR_BAD_REQUEST;
    }
    int deadline = (int)(((int64_t)c->timeout_ms + CLIENT_TICK_MS - 1) / CLIENT_TICK_MS);
    if (!c->registered) { /* the first call, or the one after session_expired: one deadline for both */
        int used = 0;
        zvsr_status registered = register_session(c, deadline, &used);
        if (registered != ZVSR_OK) return registered;
        deadline -= used;
    }
    zvsr_wire_message request = {.type = ZVSR_TYPE_REQUEST,
                                 .client_id = c->client_id,
                                 .request_number = c->request_number + 1,
                                 .payload = operation,
                                 .payload_len = len};
    zvsr_status status = zvsr_encode(&request, &c->wire);
    if (status != ZVSR_OK) {
        set_message(c, "cannot encode the request (%s)", zvsr_status_name(status));
        return status;
    }
    c->request_number++; /* a new request: numbers increase by exactly one, retries repeat them */

    call k = {.number = c->request_number, .result = result, .after = c->retry_ticks, .retry_running = c->direct};
    return run_call(c, &k, deadline);
}

/* --- the coordination helpers --------------------------------------------------------------------------- */

/* The app's error result: a map with exactly the str keys "error" (a str) and "message". */
static bool app_error_result(zvsr_client *c, const mp_item *value, const uint8_t *end) {
    if (value->kind != MP_MAP) return false;
    mp_cur cur = {value->ptr, end};
    size_t error_keys = 0, message_keys = 0, other = 0;
    mp_item code = {0}, text = {0};
    for (uint32_t k = 0; k < value->len; k++) {
        mp_item ki, vi;
        if (!mp_read(&cur, &ki) || !mp_read(&cur, &vi)) return false;
        if (mp_str_is(&ki, "error")) {
            error_keys = 1;
            code = vi;
        } else if (mp_str_is(&ki, "message")) {
            message_keys = 1;
            text = vi;
        } else {
            other++;
        }
    }
    if (!error_keys || !message_keys || other || code.kind != MP_STR) return false;
    snprintf(c->app_error, sizeof c->app_error, "%.*s", (int)code.len, (const char *)code.ptr);
    if (text.kind == MP_STR) {
        set_message(c, "%.*s", (int)text.len, (const char *)text.ptr);
    } else {
        mp_cur t = {text.start, end};
        zvsr_buffer rendered = ZVSR_BUFFER_INIT;
        mp_item skip;
        if (mp_read(&t, &skip) && zvsr_render(text.start, mp_size(&text, &t), &rendered) == ZVSR_OK)
            set_message(c, "%s", (const char *)rendered.data);
        zvsr_buffer_free(&rendered);
    }
    return true;
}

static zvsr_status unexpected(zvsr_client *c, const char *what, const uint8_t *result, size_t len) {
    zvsr_buffer rendered = ZVSR_BUFFER_INIT;
    if (zvsr_render(result, len, &rendered) == ZVSR_OK)
        set_message(c, "%s: unexpected result %.200s", what, (const char *)rendered.data);
    else
        set_message(c, "%s: unexpected result", what);
    zvsr_buffer_free(&rendered);
    return ZVSR_ERR_PROTOCOL;
}

/* Runs c->op (built by the caller) and checks the result: *value is its top-level value. `check_app_error`:
 * an error result is ZVSR_ERR_APP (every op but get: a stored value may look like one). */
static zvsr_status run_op(zvsr_client *c, zvsr_status built, const char *what, bool check_app_error,
                          mp_item *value) {
    c->message[0] = 0;
    c->app_error[0] = 0;
    if (built == ZVSR_ERR_INVALID) {
        set_message(c, "%s: a key, name, owner or value is NULL or not valid UTF-8", what);
        return built;
    }
    if (built == ZVSR_ERR_BAD_REQUEST) {
        set_message(c, "%s: operation is %zu bytes > %d", what, c->op.len, ZVSR_OPERATION_BYTES_MAX);
        return built;
    }
    if (built != ZVSR_OK) {
        set_message(c, "%s: out of memory", what);
        return built;
    }
    zvsr_status status = zvsr_execute(c, c->op.data, c->op.len, &c->result);
    if (status != ZVSR_OK) return status;
    if (check_value(c->result.data, c->result.len) != ZVSR_DECODE_OK) {
        set_message(c, "%s: the result is not one valid msgpack value", what);
        return ZVSR_ERR_PROTOCOL;
    }
    mp_cur cur = {c->result.data, c->result.data + c->result.len};
    if (!mp_read(&cur, value)) return ZVSR_ERR_PROTOCOL;
    if (check_app_error && app_error_result(c, value, cur.end)) return ZVSR_ERR_APP;
    return ZVSR_OK;
}

static const uint8_t *result_end(const zvsr_client *c) { return c->result.data + c->result.len; }

zvsr_status zvsr_get(zvsr_client *c, const char *key, zvsr_buffer *value, zvsr_value_kind *kind) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    zvsr_status status = run_op(c, zvsr_op_get(&c->op, key), "get", false, &v);
    if (status != ZVSR_OK) return status;
    return value_text(&v, c->result.len, value, kind);
}

zvsr_status zvsr_put(zvsr_client *c, const char *key, const char *value) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    return run_op(c, zvsr_op_put(&c->op, key, value), "put", true, &v);
}

zvsr_status zvsr_put_with_lease(zvsr_client *c, const char *key, const char *value, uint64_t lease) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    return run_op(c, zvsr_op_put_with_lease(&c->op, key, value, lease), "put", true, &v);
}

zvsr_status zvsr_del(zvsr_client *c, const char *key, bool *existed) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    zvsr_status status = run_op(c, zvsr_op_del(&c->op, key), "delete", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_BOOL) return unexpected(c, "delete", c->result.data, c->result.len);
    if (existed) *existed = v.boolean;
    return ZVSR_OK;
}

zvsr_status zvsr_incr(zvsr_client *c, const char *key, int64_t by, int64_t *value) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    zvsr_status status = run_op(c, zvsr_op_incr(&c->op, key, true, by), "incr", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind == MP_NINT) {
        if (value) *value = v.i;
    } else if (v.kind == MP_UINT && v.u <= (uint64_t)INT64_MAX) {
        if (value) *value = (int64_t)v.u;
    } else if (v.kind == MP_UINT) {
        set_message(c, "incr: the new value %" PRIu64 " does not fit an int64_t", v.u);
        return ZVSR_ERR_PROTOCOL;
    } else {
        return unexpected(c, "incr", c->result.data, c->result.len);
    }
    return ZVSR_OK;
}

zvsr_status zvsr_cas(zvsr_client *c, const char *key, const char *expected, const char *new_value,
                     bool *swapped, zvsr_buffer *current, zvsr_value_kind *kind) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v, ok, now;
    zvsr_status status = run_op(c, zvsr_op_cas(&c->op, key, expected, new_value), "cas", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_MAP || !mp_map_get(&v, result_end(c), "ok", &ok) || ok.kind != MP_BOOL)
        return unexpected(c, "cas", c->result.data, c->result.len);
    if (swapped) *swapped = ok.boolean;
    if (!mp_map_get(&v, result_end(c), "value", &now)) { /* as the Python client: a missing value is nil */
        if (kind) *kind = ZVSR_VALUE_NIL;
        if (current && !buf_clear(current)) return ZVSR_ERR_NOMEM;
        return ZVSR_OK;
    }
    mp_cur after = {now.start, result_end(c)};
    mp_item skip;
    if (!mp_read(&after, &skip)) return ZVSR_ERR_PROTOCOL;
    return value_text(&now, mp_size(&now, &after), current, kind);
}

/* Reads a lock answer (c->op built by the caller, ZVSR_OK or the build's failure in `built`). */
static zvsr_status lock_result(zvsr_client *c, zvsr_status built, bool *acquired, uint64_t *token,
                               zvsr_buffer *holder) {
    mp_item v, ok, tok, who;
    zvsr_status status = run_op(c, built, "lock", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_MAP || !mp_map_get(&v, result_end(c), "ok", &ok) || ok.kind != MP_BOOL ||
        !mp_map_get(&v, result_end(c), "token", &tok) || tok.kind != MP_UINT)
        return unexpected(c, "lock", c->result.data, c->result.len);
    if (acquired) *acquired = ok.boolean;
    if (token) *token = tok.u;
    if (holder == NULL) return ZVSR_OK;
    if (!mp_map_get(&v, result_end(c), "owner", &who)) return buf_clear(holder) ? ZVSR_OK : ZVSR_ERR_NOMEM;
    mp_cur after = {who.start, result_end(c)};
    mp_item skip;
    if (!mp_read(&after, &skip)) return ZVSR_ERR_PROTOCOL;
    return value_text(&who, mp_size(&who, &after), holder, NULL);
}

zvsr_status zvsr_lock(zvsr_client *c, const char *name, const char *owner, bool *acquired, uint64_t *token,
                      zvsr_buffer *holder) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    return lock_result(c, zvsr_op_lock(&c->op, name, owner), acquired, token, holder);
}

zvsr_status zvsr_lock_with_lease(zvsr_client *c, const char *name, const char *owner, uint64_t lease,
                                 bool *acquired, uint64_t *token, zvsr_buffer *holder) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    return lock_result(c, zvsr_op_lock_with_lease(&c->op, name, owner, lease), acquired, token, holder);
}

zvsr_status zvsr_unlock(zvsr_client *c, const char *name, const char *owner, bool *released) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v, ok;
    zvsr_status status = run_op(c, zvsr_op_unlock(&c->op, name, owner), "unlock", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_MAP || !mp_map_get(&v, result_end(c), "ok", &ok) || ok.kind != MP_BOOL)
        return unexpected(c, "unlock", c->result.data, c->result.len);
    if (released) *released = ok.boolean;
    return ZVSR_OK;
}

/* --- leases ------------------------------------------------------------------------------------------------ */

zvsr_status zvsr_lease_grant(zvsr_client *c, uint64_t ttl_ms, uint64_t lock_delay_ms, uint64_t *lease) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v, id, ttl;
    zvsr_status status = run_op(c, zvsr_op_lease_grant(&c->op, ttl_ms, lock_delay_ms), "lease_grant", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_MAP || !mp_map_get(&v, result_end(c), "lease", &id) || id.kind != MP_UINT ||
        !mp_map_get(&v, result_end(c), "ttl_ms", &ttl) || ttl.kind != MP_UINT)
        return unexpected(c, "lease_grant", c->result.data, c->result.len);
    if (lease) *lease = id.u;
    return ZVSR_OK;
}

zvsr_status zvsr_lease_keepalive(zvsr_client *c, uint64_t lease, uint64_t *remaining_ms) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v;
    zvsr_status status = run_op(c, zvsr_op_lease_keepalive(&c->op, lease), "lease_keepalive", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_UINT) return unexpected(c, "lease_keepalive", c->result.data, c->result.len);
    if (remaining_ms) *remaining_ms = v.u;
    return ZVSR_OK;
}

zvsr_status zvsr_lease_revoke(zvsr_client *c, uint64_t lease, bool *revoked, zvsr_buffer *deleted) {
    if (c == NULL) return ZVSR_ERR_INVALID;
    mp_item v, ok, keys;
    zvsr_status status = run_op(c, zvsr_op_lease_revoke(&c->op, lease), "lease_revoke", true, &v);
    if (status != ZVSR_OK) return status;
    if (v.kind != MP_MAP || !mp_map_get(&v, result_end(c), "ok", &ok) || ok.kind != MP_BOOL ||
        !mp_map_get(&v, result_end(c), "deleted", &keys) || keys.kind != MP_ARRAY)
        return unexpected(c, "lease_revoke", c->result.data, c->result.len);
    if (revoked) *revoked = ok.boolean;
    if (deleted == NULL) return ZVSR_OK;
    mp_cur after = {keys.start, result_end(c)};
    mp_item skip;
    if (!mp_read(&after, &skip)) return ZVSR_ERR_PROTOCOL;
    return zvsr_render(keys.start, mp_size(&keys, &after), deleted);
}
