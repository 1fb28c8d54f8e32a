/*
 * test_vectors.c - the C client against the golden vectors (clients/testdata/, via build/vectors.h made by
 * gen_vectors.py), plus offline checks: robustness on mutated input, argument validation, and a client
 * whose endpoint never answers, and fake replicas in a thread that reconfigure under a direct client. Exit status 0 iff every check passed.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <zmq.h>

#include "vectors.h"
#include "zvsr.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        checks++;                                                                                            \
        if (!(cond)) {                                                                                       \
            failures++;                                                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                             \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fprintf(stderr, "\n");                                                                           \
        }                                                                                                    \
    } while (0)

static bool same(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len) {
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

static void hex(FILE *f, const uint8_t *data, size_t len) {
    for (size_t k = 0; k < len && k < 64; k++) fprintf(f, "%02x", data[k]);
    if (len > 64) fprintf(f, "...");
}

static bool is_client_kind(const char *kind) {
    return !strcmp(kind, "Request") || !strcmp(kind, "Reply") || !strcmp(kind, "Redirect") ||
           !strcmp(kind, "Error");
}

static zvsr_decode_result decode_kind(const char *kind, const uint8_t *data, size_t len, zvsr_wire_message *m) {
    return !strcmp(kind, "Request") ? zvsr_decode_request(data, len, m) : zvsr_decode_reply(data, len, m);
}

/* --- messages: decode to the value, encode back to the bytes ------------------------------------------ */

static void test_messages(void) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    size_t client = 0;
    for (size_t i = 0; i < COUNT(MESSAGES); i++) {
        const vec_message *v = &MESSAGES[i];
        zvsr_wire_message m;
        if (!is_client_kind(v->kind)) {
            /* replica kinds on a client socket: a real kind, on the wrong socket */
            CHECK(zvsr_decode_reply(v->bytes, v->len, &m) == ZVSR_DECODE_UNEXPECTED_TYPE, "%s: reply decoder",
                  v->name);
            CHECK(zvsr_decode_request(v->bytes, v->len, &m) == ZVSR_DECODE_UNEXPECTED_TYPE, "%s: request decoder",
                  v->name);
            continue;
        }
        client++;
        zvsr_decode_result r = decode_kind(v->kind, v->bytes, v->len, &m);
        CHECK(r == ZVSR_DECODE_OK, "%s: decode: %s", v->name, zvsr_decode_result_name(r));
        if (r != ZVSR_DECODE_OK) continue;
        CHECK(m.type == v->type, "%s: type %u != %u", v->name, (unsigned)m.type, v->type);
        CHECK(m.view == v->view, "%s: view %" PRIu64 " != %" PRIu64, v->name, m.view, v->view);
        CHECK(m.primary == v->primary, "%s: primary", v->name);
        CHECK(m.client_id == v->client_id, "%s: client_id %" PRIu64 " != %" PRIu64, v->name, m.client_id,
              v->client_id);
        CHECK(m.request_number == v->request_number, "%s: request_number", v->name);
        CHECK(same(m.payload, m.payload_len, v->payload, v->payload_len), "%s: operation/result bytes", v->name);
        if (v->code) {
            CHECK(m.code_len == strlen(v->code) && !memcmp(m.code, v->code, m.code_len), "%s: code", v->name);
            CHECK(same((const uint8_t *)m.message, m.message_len, v->message, v->message_len), "%s: message",
                  v->name);
        } else {
            CHECK(m.code == NULL && m.message == NULL, "%s: code/message on a non-Error", v->name);
        }
        /* the other decoder refuses it: a real kind on the wrong socket */
        zvsr_wire_message other;
        zvsr_decode_result wrong = !strcmp(v->kind, "Request") ? zvsr_decode_reply(v->bytes, v->len, &other)
                                                                : zvsr_decode_request(v->bytes, v->len, &other);
        CHECK(wrong == ZVSR_DECODE_UNEXPECTED_TYPE, "%s: wrong-socket decoder: %s", v->name,
              zvsr_decode_result_name(wrong));

        /* encode the vector's value: exactly the golden bytes */
        zvsr_wire_message e = {.type = (zvsr_type)v->type,
                               .view = v->view,
                               .primary = v->primary,
                               .client_id = v->client_id,
                               .request_number = v->request_number,
                               .payload = v->payload,
                               .payload_len = v->payload_len,
                               .code = v->code,
                               .code_len = v->code ? strlen(v->code) : 0,
                               .message = (const char *)v->message,
                               .message_len = v->message_len};
        zvsr_status s = zvsr_encode(&e, &out);
        CHECK(s == ZVSR_OK, "%s: encode: %s", v->name, zvsr_status_name(s));
        if (s == ZVSR_OK && !same(out.data, out.len, v->bytes, v->len)) {
            CHECK(0, "%s: encoding differs", v->name);
            fprintf(stderr, "  want ");
            hex(stderr, v->bytes, v->len);
            fprintf(stderr, "\n  got  ");
            hex(stderr, out.data, out.len);
            fprintf(stderr, "\n");
        }
    }
    CHECK(client >= 4, "client kinds in the vectors: %zu", client);
    printf("messages: %zu vectors (%zu client kinds)\n", COUNT(MESSAGES), client);
    zvsr_buffer_free(&out);
}

static void test_noncanonical(void) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    for (size_t i = 0; i < COUNT(NONCANONICAL); i++) {
        const vec_noncanonical *v = &NONCANONICAL[i];
        zvsr_wire_message m, c;
        if (!is_client_kind(v->kind)) {
            CHECK(zvsr_decode_reply(v->bytes, v->len, &m) == ZVSR_DECODE_UNEXPECTED_TYPE, "%s", v->name);
            continue;
        }
        zvsr_decode_result r = decode_kind(v->kind, v->bytes, v->len, &m);
        CHECK(r == ZVSR_DECODE_OK, "%s: decode: %s", v->name, zvsr_decode_result_name(r));
        CHECK(decode_kind(v->kind, v->canonical, v->canonical_len, &c) == ZVSR_DECODE_OK, "%s: canonical", v->name);
        if (r != ZVSR_DECODE_OK) continue;
        CHECK(m.type == c.type && m.client_id == c.client_id && m.request_number == c.request_number &&
                  m.view == c.view && same(m.payload, m.payload_len, c.payload, c.payload_len),
              "%s: not the same message as canonical_hex", v->name);
        CHECK(zvsr_encode(&m, &out) == ZVSR_OK && same(out.data, out.len, v->canonical, v->canonical_len),
              "%s: re-encoding is not canonical_hex", v->name);
    }
    printf("noncanonical: %zu vectors\n", COUNT(NONCANONICAL));
    zvsr_buffer_free(&out);
}

static void test_invalid(void) {
    size_t strict = 0;
    for (size_t i = 0; i < COUNT(INVALID); i++) {
        const vec_invalid *v = &INVALID[i];
        zvsr_wire_message m;
        bool any = !strcmp(v->decoder, "any");
        if (any || !strcmp(v->decoder, "client_reply")) {
            zvsr_decode_result r = zvsr_decode_reply(v->bytes, v->len, &m);
            CHECK(!strcmp(zvsr_decode_result_name(r), v->reason), "%s: reply decoder says %s, want %s", v->name,
                  zvsr_decode_result_name(r), v->reason);
            strict++;
        }
        if (any || !strcmp(v->decoder, "request")) {
            zvsr_decode_result r = zvsr_decode_request(v->bytes, v->len, &m);
            CHECK(!strcmp(zvsr_decode_result_name(r), v->reason), "%s: request decoder says %s, want %s",
                  v->name, zvsr_decode_result_name(r), v->reason);
            strict++;
        }
        if (!strcmp(v->decoder, "replica")) {
            /* not for a client's decoders, but none of them is a valid answer either */
            CHECK(zvsr_decode_reply(v->bytes, v->len, &m) != ZVSR_DECODE_OK, "%s: accepted as a reply", v->name);
        }
    }
    printf("invalid: %zu vectors (%zu decoder/reason checks)\n", COUNT(INVALID), strict);
}

/* --- coordination: operations built by zvsr_op_*, results rendered ----------------------------------- */

static void expect_rendering(const char *name, const char *what, const uint8_t *data, size_t len,
                             const char *want) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    zvsr_status s = zvsr_render(data, len, &out);
    if (want == NULL) {
        CHECK(s == ZVSR_ERR_PROTOCOL, "%s: %s is not msgpack, but rendered (%s)", name, what, zvsr_status_name(s));
    } else {
        CHECK(s == ZVSR_OK && !strcmp((const char *)out.data, want), "%s: %s renders as\n  %s\nwant\n  %s", name,
              what, s == ZVSR_OK ? (const char *)out.data : zvsr_status_name(s), want);
    }
    zvsr_buffer_free(&out);
}

static void test_coordination(void) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    size_t built = 0;
    for (size_t i = 0; i < COUNT(STEPS); i++) {
        const vec_step *v = &STEPS[i];
        expect_rendering(v->name, "op", v->op, v->op_len, v->op_rendering);
        expect_rendering(v->name, "result", v->result, v->result_len, v->result_rendering);
        const vec_builder *b = &v->builder;
        if (b->op == 0) continue;
        zvsr_status s = ZVSR_ERR_INVALID, s2 = ZVSR_OK;
        zvsr_buffer alt = ZVSR_BUFFER_INIT;
        bool has_alt = false;
        switch (b->op) {
        case 1: s = zvsr_op_get(&out, b->a); break;
        case 2:
            s = zvsr_op_put_raw(&out, b->a, b->raw1, b->raw1_len);
            if (b->str1) {
                s2 = zvsr_op_put(&alt, b->a, b->str1);
                has_alt = true;
            }
            break;
        case 3: s = zvsr_op_del(&out, b->a); break;
        case 4: s = zvsr_op_incr(&out, b->a, b->has_by, b->by); break;
        case 5:
            s = zvsr_op_cas_raw(&out, b->a, b->raw1, b->raw1_len, b->raw2, b->raw2_len);
            if ((b->str1 || b->nil1) && b->str2) {
                s2 = zvsr_op_cas(&alt, b->a, b->nil1 ? NULL : b->str1, b->str2);
                has_alt = true;
            }
            break;
        case 6: s = zvsr_op_lock(&out, b->a, b->b); break;
        case 7: s = zvsr_op_unlock(&out, b->a, b->b); break;
        }
        built++;
        CHECK(s == ZVSR_OK && same(out.data, out.len, v->op, v->op_len), "%s: zvsr_op_* bytes differ (%s)", v->name,
              zvsr_status_name(s));
        if (has_alt)
            CHECK(s2 == ZVSR_OK && same(alt.data, alt.len, v->op, v->op_len), "%s: string builder bytes differ",
                  v->name);
        zvsr_buffer_free(&alt);
    }
    CHECK(built >= 30, "only %zu coordination ops were buildable", built);
    printf("coordination: %zu steps (%zu ops rebuilt byte for byte)\n", COUNT(STEPS), built);
    zvsr_buffer_free(&out);
}

/* --- robustness: every prefix and many one-byte mutations of every vector ----------------------------- */

static void poke(const uint8_t *data, size_t len, size_t *accepted) {
    zvsr_wire_message m;
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    if (zvsr_decode_reply(data, len, &m) == ZVSR_DECODE_OK) {
        (*accepted)++;
        /* whatever was accepted is a well-formed message: it encodes (canonically) and decodes again */
        CHECK(zvsr_encode(&m, &out) == ZVSR_OK, "accepted reply does not encode");
        zvsr_wire_message again;
        CHECK(zvsr_decode_reply(out.data, out.len, &again) == ZVSR_DECODE_OK, "re-encoded reply refused");
    }
    if (zvsr_decode_request(data, len, &m) == ZVSR_DECODE_OK) {
        (*accepted)++;
        CHECK(zvsr_encode(&m, &out) == ZVSR_OK, "accepted request does not encode");
    }
    (void)zvsr_render(data, len, &out);
    zvsr_buffer_free(&out);
}

static void mutate_all(const uint8_t *data, size_t len, size_t *runs, size_t *accepted) {
    static const uint8_t values[] = {0x00, 0x7f, 0x80, 0x8f, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xc4,
                                     0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcf, 0xd3, 0xd4, 0xd9, 0xdb, 0xdc,
                                     0xdd, 0xde, 0xdf, 0xe0, 0xff};
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL) return;
    for (size_t cut = 0; cut <= len; cut++) { /* every prefix (on the heap: valgrind sees overreads) */
        memcpy(copy, data, cut);
        poke(copy, cut, accepted);
        (*runs)++;
    }
    for (size_t at = 0; at < len; at++) {
        memcpy(copy, data, len);
        for (size_t k = 0; k < sizeof values; k++) {
            copy[at] = values[k];
            poke(copy, len, accepted);
            (*runs)++;
        }
        copy[at] = data[at] ^ 0x01;
        poke(copy, len, accepted);
        (*runs)++;
    }
    free(copy);
}

static void test_robustness(void) {
    size_t runs = 0, accepted = 0;
    for (size_t i = 0; i < COUNT(MESSAGES); i++) mutate_all(MESSAGES[i].bytes, MESSAGES[i].len, &runs, &accepted);
    for (size_t i = 0; i < COUNT(INVALID); i++)
        if (INVALID[i].len < 2048) mutate_all(INVALID[i].bytes, INVALID[i].len, &runs, &accepted);
    for (size_t i = 0; i < COUNT(STEPS); i++) mutate_all(STEPS[i].result, STEPS[i].result_len, &runs, &accepted);
    /* hostile headers: huge declared lengths in tiny inputs */
    static const uint8_t hostile[][6] = {{0xdd, 0xff, 0xff, 0xff, 0xff, 0x00}, {0xdf, 0xff, 0xff, 0xff, 0xff, 0x00},
                                         {0xdb, 0xff, 0xff, 0xff, 0xff, 0x00}, {0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},
                                         {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, {0x81, 0xa4, 't', 'y', 'p', 'e'}};
    for (size_t i = 0; i < sizeof hostile / sizeof *hostile; i++) {
        zvsr_wire_message m;
        CHECK(zvsr_decode_reply(hostile[i], 6, &m) != ZVSR_DECODE_OK, "hostile %zu accepted", i);
        mutate_all(hostile[i], 6, &runs, &accepted);
    }
    /* deep nesting: 5000 nested arrays is refused, not a stack overflow */
    size_t deep = 5000;
    uint8_t *nested = malloc(deep + 1);
    if (nested) {
        memset(nested, 0x91, deep);
        nested[deep] = 0x01;
        zvsr_buffer out = ZVSR_BUFFER_INIT;
        CHECK(zvsr_render(nested, deep + 1, &out) == ZVSR_ERR_PROTOCOL, "5000 levels rendered");
        zvsr_wire_message m;
        CHECK(zvsr_decode_reply(nested, deep + 1, &m) == ZVSR_DECODE_NOT_MSGPACK, "5000 levels decoded");
        zvsr_buffer_free(&out);
        free(nested);
    }
    printf("robustness: %zu decodes of prefixes and mutations (%zu accepted, all re-encodable)\n", runs, accepted);
}

/* --- encoder argument checks ------------------------------------------------------------------------- */

static void test_encode_bounds(void) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    /* primary is a replica id: 15 and 2^32-1 are fine (ids outgrow the 15 members after reconfigurations) */
    zvsr_wire_message m = {.type = ZVSR_TYPE_REDIRECT, .primary = (uint64_t)ZVSR_REPLICA_ID_MAX + 1};
    CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "primary 2^32 encoded");
    for (uint64_t primary = ZVSR_REPLICAS_MAX; primary <= ZVSR_REPLICA_ID_MAX; primary = primary * 2 + 1) {
        zvsr_wire_message decoded;
        m = (zvsr_wire_message){.type = ZVSR_TYPE_REDIRECT, .view = 3, .primary = primary};
        CHECK(zvsr_encode(&m, &out) == ZVSR_OK, "primary %llu refused", (unsigned long long)primary);
        CHECK(zvsr_decode_reply(out.data, out.len, &decoded) == ZVSR_DECODE_OK && decoded.primary == primary,
              "primary %llu does not round-trip", (unsigned long long)primary);
    }
    m = (zvsr_wire_message){.type = 24};
    CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "type 24 encoded");
    m = (zvsr_wire_message){.type = ZVSR_TYPE_ERROR, .code = "nope", .code_len = 4};
    CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "unknown code encoded");
    m = (zvsr_wire_message){
        .type = ZVSR_TYPE_ERROR, .code = "busy", .code_len = 4, .message = "\xff", .message_len = 1};
    CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "invalid UTF-8 message encoded");
    char *long_message = malloc(1025);
    if (long_message) {
        memset(long_message, 'x', 1025);
        m = (zvsr_wire_message){.type = ZVSR_TYPE_ERROR, .code = "busy", .code_len = 4, .message = long_message,
                                .message_len = 1025};
        CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "1025-char message encoded");
        m.message_len = 1024;
        CHECK(zvsr_encode(&m, &out) == ZVSR_OK, "1024-char message refused");
        free(long_message);
    }
    m = (zvsr_wire_message){.type = ZVSR_TYPE_REQUEST, .payload = (const uint8_t *)"", .payload_len = 65537};
    CHECK(zvsr_encode(&m, &out) == ZVSR_ERR_INVALID, "65537-byte operation encoded");
    /* op builders: invalid UTF-8 and too large */
    CHECK(zvsr_op_get(&out, "\xc3\x28") == ZVSR_ERR_INVALID, "invalid UTF-8 key built");
    CHECK(zvsr_op_get(&out, NULL) == ZVSR_ERR_INVALID, "NULL key built");
    CHECK(zvsr_op_put_raw(&out, "k", (const uint8_t *)"\x92\x01", 2) == ZVSR_ERR_INVALID, "truncated raw value");
    char *big = malloc(70000);
    if (big) {
        memset(big, 'v', 69999);
        big[69999] = 0;
        CHECK(zvsr_op_put(&out, "k", big) == ZVSR_ERR_BAD_REQUEST, "70 kB op built");
        free(big);
    }
    CHECK(zvsr_op_incr(&out, "k", true, INT64_MIN) == ZVSR_OK && out.len == 27 && out.data[18] == 0xd3,
          "incr by INT64_MIN");
    for (int s = 0; s <= 9; s++) CHECK(strcmp(zvsr_status_name((zvsr_status)s), "unknown") != 0, "status %d name", s);
    zvsr_buffer_free(&out);
}

/* --- lease operations: the canonical bytes (as Python's msgpack.packb writes the same maps) ---------- */

#define BYTES(literal) (const uint8_t *)(literal), sizeof(literal) - 1

static void test_lease_ops(void) {
    zvsr_buffer out = ZVSR_BUFFER_INIT;
    size_t count = 0;
#define CHECK_OP(built, expected, what)                                                                      \
    do {                                                                                                     \
        count++;                                                                                             \
        CHECK((built) == ZVSR_OK && same(out.data, out.len, BYTES(expected)), "%s: bytes differ", what);     \
    } while (0)
    /* {"op": "lease_grant", "ttl_ms": 5000}: no lock_delay_ms when it is 0 (the app's default) */
    CHECK_OP(zvsr_op_lease_grant(&out, 5000, 0),
             "\x82\xa2op\xablease_grant\xa6ttl_ms\xcd\x13\x88", "lease_grant");
    CHECK_OP(zvsr_op_lease_grant(&out, 5000, 300),
             "\x83\xa2op\xablease_grant\xa6ttl_ms\xcd\x13\x88\xadlock_delay_ms\xcd\x01\x2c",
             "lease_grant with a lock delay");
    CHECK_OP(zvsr_op_lease_keepalive(&out, 7), "\x82\xa2op\xaflease_keepalive\xa5lease\x07", "lease_keepalive");
    CHECK_OP(zvsr_op_lease_revoke(&out, (uint64_t)1 << 40),
             "\x82\xa2op\xaclease_revoke\xa5lease\xcf\x00\x00\x01\x00\x00\x00\x00\x00", "lease_revoke");
    CHECK_OP(zvsr_op_put_with_lease(&out, "k", "v", 7),
             "\x84\xa2op\xa3put\xa3key\xa1k\xa5value\xa1v\xa5lease\x07", "put with a lease");
    CHECK_OP(zvsr_op_lock_with_lease(&out, "L", "me", 300),
             "\x84\xa2op\xa4lock\xa4name\xa1L\xa5owner\xa2me\xa5lease\xcd\x01\x2c", "lock with a lease");
#undef CHECK_OP
    CHECK(zvsr_op_put_with_lease(&out, "\xc3\x28", "v", 7) == ZVSR_ERR_INVALID, "invalid UTF-8 key built");
    CHECK(zvsr_op_lock_with_lease(&out, "L", NULL, 7) == ZVSR_ERR_INVALID, "NULL owner built");
    CHECK(zvsr_lease_grant(NULL, 1000, 0, NULL) == ZVSR_ERR_INVALID, "grant without a client");
    printf("leases: %zu ops built byte for byte\n", count);
    zvsr_buffer_free(&out);
}

/* --- the client, offline --------------------------------------------------------------------------- */

static double elapsed_ms(struct timespec *since) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

static void test_client_offline(void) {
    zvsr_client *c = NULL;
    const char *none[] = {NULL};
    const char *bad[] = {"127.0.0.1:7700"};
    const char *good[] = {"tcp://127.0.0.1:1"};
    CHECK(zvsr_client_new(good, 0, NULL, &c) == ZVSR_ERR_INVALID && c == NULL, "no endpoints accepted");
    CHECK(zvsr_client_new(none, 1, NULL, &c) == ZVSR_ERR_INVALID, "NULL endpoint accepted");
    CHECK(zvsr_client_new(bad, 1, NULL, &c) == ZVSR_ERR_INVALID, "endpoint without scheme accepted");
    CHECK(strstr(zvsr_last_message(NULL), "127.0.0.1:7700") != NULL, "message: %s", zvsr_last_message(NULL));
    const char *unknown_scheme[] = {"bogus://127.0.0.1:7700"};
    CHECK(zvsr_client_new(unknown_scheme, 1, NULL, &c) == ZVSR_ERR_INVALID, "bogus:// accepted");

    zvsr_options o;
    zvsr_options_init(&o);
    char server_public[41], server_secret[41], public_key[41], secret_key[41];
    if (zmq_has("curve") && zmq_curve_keypair(server_public, server_secret) == 0 &&
        zmq_curve_keypair(public_key, secret_key) == 0) {
        o.curve_server_key = server_public;
        CHECK(zvsr_client_new(good, 1, &o, &c) == ZVSR_ERR_INVALID, "one CurveZMQ key accepted");
        o.curve_public_key = public_key;
        o.curve_secret_key = "too short";
        CHECK(zvsr_client_new(good, 1, &o, &c) == ZVSR_ERR_INVALID, "short CurveZMQ key accepted");
        o.curve_secret_key = secret_key;
        zvsr_status s = zvsr_client_new(good, 1, &o, &c);
        CHECK(s == ZVSR_OK, "CurveZMQ client: %s %s", zvsr_status_name(s), zvsr_last_message(NULL));
        zvsr_client_free(c);
        c = NULL;
        printf("curve: keys validated and set\n");
    } else {
        printf("curve: this libzmq has no CurveZMQ; skipped\n");
    }

    /* two clients: independent random ids */
    zvsr_client *a = NULL, *b = NULL;
    zvsr_options fast;
    zvsr_options_init(&fast);
    fast.timeout_ms = 150;
    fast.direct = true;
    CHECK(zvsr_client_new(good, 1, &fast, &a) == ZVSR_OK && zvsr_client_new(good, 1, &fast, &b) == ZVSR_OK,
          "clients: %s", zvsr_last_message(NULL));
    if (a && b) {
        CHECK(zvsr_client_id(a) != zvsr_client_id(b), "two clients share a client_id");
        zvsr_buffer result = ZVSR_BUFFER_INIT;
        static uint8_t big[ZVSR_OPERATION_BYTES_MAX + 1];
        CHECK(zvsr_execute(a, big, sizeof big, &result) == ZVSR_ERR_BAD_REQUEST, "oversized operation sent");
        CHECK(zvsr_client_request_number(a) == 0, "a refused operation used a request number");
        CHECK(zvsr_get(a, "\xff", &result, NULL) == ZVSR_ERR_INVALID, "invalid UTF-8 key sent");
        /* nobody listens on port 1: the call ends at its deadline, outcome unknown */
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        zvsr_status s = zvsr_put(a, "k", "v");
        double ms = elapsed_ms(&start);
        CHECK(s == ZVSR_ERR_TIMEOUT, "dead endpoint: %s (%s)", zvsr_status_name(s), zvsr_last_message(a));
        CHECK(ms >= 140 && ms < 2000, "dead endpoint: the call took %.0f ms for a 150 ms timeout", ms);
        CHECK(strstr(zvsr_last_message(a), "may or may not") != NULL, "message: %s", zvsr_last_message(a));
        /* nothing answered its register: the operation was never sent, nor numbered */
        CHECK(strstr(zvsr_last_message(a), "while registering a session") != NULL, "%s", zvsr_last_message(a));
        CHECK(zvsr_client_request_number(a) == 0, "request number after a call that could not register");
        uint64_t nonce = zvsr_client_id(a);
        s = zvsr_put(a, "k", "v");
        CHECK(s == ZVSR_ERR_TIMEOUT && zvsr_client_id(a) == nonce, "the next call registers again, same nonce");
        printf("offline client: timeout after %.0f ms: %s\n", ms, zvsr_last_message(a));
        zvsr_buffer_free(&result);
    }
    zvsr_client_free(a);
    zvsr_client_free(b);
    zvsr_client_free(NULL);
}

/* --- following reconfiguration: fake replicas (ROUTERs in a thread) ----------------------------------------
 * Routers 0-2 are replicas 0, 1, 2 of epoch 0. Replicas 0 and 1 were replaced by 5 (router 3) and 7 (router 4)
 * in epoch 1 from view 3, so 7 leads view 4 = members[(4 - 3) mod 3]. Every router but 4 redirects to 7 in
 * view 4 and answers the status query with epoch 1's membership; router 4 replies. */

#define FAKES 5
typedef struct {
    void *routers[FAKES];
    char endpoints[FAKES][64];
    atomic_int requests[FAKES];
    atomic_int status_queries[FAKES];
    atomic_bool stop;
    _Atomic uint64_t last_number[FAKES];
    int answer_status; /* 0: never answer the status query */
} fakes;

static void pack_str(msgpack_packer *pk, const char *s) { msgpack_pack_str_with_body(pk, s, strlen(s)); }

static void status_answer(const fakes *f, msgpack_sbuffer *sb) {
    static const uint64_t ids[] = {5, 7, 2};
    static const int routers[] = {3, 4, 2};
    msgpack_packer pk;
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    pack_str(&pk, "type");
    msgpack_pack_uint64(&pk, 31);
    pack_str(&pk, "last_heard_ms"); /* int keys, as a real answer has */
    msgpack_pack_map(&pk, 1);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_uint64(&pk, 12);
    pack_str(&pk, "membership");
    msgpack_pack_map(&pk, 4);
    pack_str(&pk, "epoch");
    msgpack_pack_uint64(&pk, 1);
    pack_str(&pk, "start_op");
    msgpack_pack_uint64(&pk, 10);
    pack_str(&pk, "start_view");
    msgpack_pack_uint64(&pk, 3);
    pack_str(&pk, "members");
    msgpack_pack_array(&pk, 3);
    for (int k = 0; k < 3; k++) {
        msgpack_pack_map(&pk, 3);
        pack_str(&pk, "id");
        msgpack_pack_uint64(&pk, ids[k]);
        pack_str(&pk, "peer");
        pack_str(&pk, "tcp://127.0.0.1:1");
        pack_str(&pk, "client");
        pack_str(&pk, f->endpoints[routers[k]]);
    }
}

static void *serve_fakes(void *arg) {
    fakes *f = arg;
    static const uint8_t status_query[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 30};
    zmq_pollitem_t items[FAKES];
    for (int i = 0; i < FAKES; i++) items[i] = (zmq_pollitem_t){.socket = f->routers[i], .events = ZMQ_POLLIN};
    while (!atomic_load(&f->stop)) {
        if (zmq_poll(items, FAKES, 20) <= 0) continue;
        for (int i = 0; i < FAKES; i++) {
            if (!(items[i].revents & ZMQ_POLLIN)) continue;
            uint8_t identity[256], payload[4096];
            int id_len = zmq_recv(f->routers[i], identity, sizeof identity, 0);
            int len = zmq_recv(f->routers[i], payload, sizeof payload, 0);
            if (id_len < 0 || len < 0 || len > (int)sizeof payload) continue;
            zvsr_buffer out = ZVSR_BUFFER_INIT;
            zvsr_wire_message m;
            if ((size_t)len == sizeof status_query && memcmp(payload, status_query, sizeof status_query) == 0) {
                atomic_fetch_add(&f->status_queries[i], 1);
                if (!f->answer_status) continue;
                msgpack_sbuffer sb;
                msgpack_sbuffer_init(&sb);
                status_answer(f, &sb);
                zmq_send(f->routers[i], identity, (size_t)id_len, ZMQ_SNDMORE);
                zmq_send(f->routers[i], sb.data, sb.size, 0);
                msgpack_sbuffer_destroy(&sb);
                continue;
            }
            if (zvsr_decode_request(payload, (size_t)len, &m) != ZVSR_DECODE_OK) continue;
            atomic_fetch_add(&f->requests[i], 1);
            f->last_number[i] = m.request_number;
            zvsr_wire_message answer = {.client_id = m.client_id, .request_number = m.request_number, .view = 4};
            static const uint8_t nil = 0xc0;
            static const uint8_t session[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 77}; /* a register's reply: session 77 */
            if (i == 4) {
                answer.type = ZVSR_TYPE_REPLY;
                answer.payload = m.request_number == 0 ? session : &nil;
                answer.payload_len = m.request_number == 0 ? sizeof session : 1;
            } else {
                answer.type = ZVSR_TYPE_REDIRECT;
                answer.primary = 7;
            }
            if (zvsr_encode(&answer, &out) == ZVSR_OK) {
                zmq_send(f->routers[i], identity, (size_t)id_len, ZMQ_SNDMORE);
                zmq_send(f->routers[i], out.data, out.len, 0);
            }
            zvsr_buffer_free(&out);
        }
    }
    return NULL;
}

static bool fakes_start(fakes *f, void *context, pthread_t *thread) {
    for (int i = 0; i < FAKES; i++) {
        f->routers[i] = zmq_socket(context, ZMQ_ROUTER);
        int linger = 0;
        size_t size = sizeof f->endpoints[i];
        if (f->routers[i] == NULL || zmq_setsockopt(f->routers[i], ZMQ_LINGER, &linger, sizeof linger) ||
            zmq_bind(f->routers[i], "tcp://127.0.0.1:*") ||
            zmq_getsockopt(f->routers[i], ZMQ_LAST_ENDPOINT, f->endpoints[i], &size))
            return false;
    }
    return pthread_create(thread, NULL, serve_fakes, f) == 0;
}

static void fakes_stop(fakes *f, pthread_t thread) {
    atomic_store(&f->stop, true);
    pthread_join(thread, NULL);
    for (int i = 0; i < FAKES; i++)
        if (f->routers[i]) zmq_close(f->routers[i]);
}

static void run_reconfiguration(int answer_status) {
    void *context = zmq_ctx_new();
    fakes *f = calloc(1, sizeof *f);
    pthread_t thread;
    f->answer_status = answer_status;
    bool started = context && f && fakes_start(f, context, &thread);
    CHECK(started, "fake replicas: %s", zmq_strerror(errno));
    if (!started) {
        free(f);
        if (context) zmq_ctx_term(context);
        return;
    }
    const char *replicas[] = {f->endpoints[0], f->endpoints[1], f->endpoints[2]};
    zvsr_options o;
    zvsr_options_init(&o);
    o.direct = true;
    o.timeout_ms = answer_status ? 5000 : 1200;
    zvsr_client *c = NULL;
    CHECK(zvsr_client_new(replicas, 3, &o, &c) == ZVSR_OK, "client: %s", zvsr_last_message(NULL));
    if (c != NULL && answer_status) {
        /* A Redirect to replica 7, unknown: the client asks for the status and moves to epoch 1's members. */
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        zvsr_status s = zvsr_put(c, "k", "v");
        double ms = elapsed_ms(&start);
        CHECK(s == ZVSR_OK, "put across a reconfiguration: %s (%s)", zvsr_status_name(s), zvsr_last_message(c));
        CHECK(zvsr_client_epoch(c) == 1, "epoch %" PRIu64 " after the status answer", zvsr_client_epoch(c));
        CHECK(zvsr_client_view(c) == 4, "view %" PRIu64, zvsr_client_view(c));
        int asked = f->status_queries[0] + f->status_queries[1] + f->status_queries[2];
        CHECK(asked >= 1 && asked <= 3 * (int)(ms / 500 + 1), "%d status queries in %.0f ms (a round per 500 ms)",
              asked, ms);
        /* (a retry round, under a slow run, may send it there once more: the same numbers) */
        int at_new = f->requests[4];
        CHECK(at_new >= 1 && f->last_number[4] == 1, "the new primary got request 1: %d sends", at_new);
        int before0 = f->requests[0], before1 = f->requests[1];
        s = zvsr_put(c, "k", "w");
        CHECK(s == ZVSR_OK && f->requests[4] > at_new && f->last_number[4] == 2,
              "the next request goes to the new primary: %s", zvsr_status_name(s));
        CHECK(f->requests[0] == before0 && f->requests[1] == before1, "departed replicas 0 and 1 got nothing more");
        printf("reconfiguration: followed epoch 1 (members 5, 7, 2) after %d status queries\n", asked);
    } else if (c != NULL) {
        /* Nobody answers the status query: the client keeps its replicas, asking at most once per 500 ms. */
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        zvsr_status s = zvsr_put(c, "k", "v");
        double ms = elapsed_ms(&start);
        int asked = f->status_queries[0] + f->status_queries[1] + f->status_queries[2];
        int rounds_max = 3 * (int)(ms / 500 + 1);
        CHECK(s == ZVSR_ERR_UNAVAILABLE, "all redirected: %s (%s)", zvsr_status_name(s), zvsr_last_message(c));
        CHECK(zvsr_client_epoch(c) == 0, "no status answer, yet epoch %" PRIu64, zvsr_client_epoch(c));
        CHECK(asked >= 3 && asked <= rounds_max, "%d status queries in %.0f ms (at most %d)", asked, ms, rounds_max);
    }
    zvsr_client_free(c);
    fakes_stop(f, thread);
    free(f);
    zmq_ctx_term(context);
}

static void test_reconfiguration(void) {
    run_reconfiguration(1);
    run_reconfiguration(0);
}

int main(void) {
    test_messages();
    test_noncanonical();
    test_invalid();
    test_coordination();
    test_lease_ops();
    test_robustness();
    test_encode_bounds();
    test_client_offline();
    test_reconfiguration();
    printf("%d checks, %d failures\n", checks, failures);
    return failures ? 1 : 0;
}
