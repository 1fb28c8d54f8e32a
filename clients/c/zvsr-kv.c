/*
 * zvsr-kv - the built-in coordination app of a zvsr cluster from the shell, through the C client.
 *
 *   zvsr-kv [options] get KEY | put [--lease ID] KEY VALUE | del KEY | incr KEY [BY] | cas KEY EXPECTED NEW
 *           | cas --missing KEY NEW | lock [--lease ID] NAME OWNER | unlock NAME OWNER
 *           | lease grant TTL_MS [LOCK_DELAY_MS] | lease keepalive ID | lease revoke ID
 *
 * Values are strings. Exit codes: see usage() and README.md.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zvsr.h"

enum {
    EXIT_NO = 1,          /* answered, but no: key missing, cas mismatch, lock held, ... */
    EXIT_USAGE = 2,       /* bad command line or argument */
    EXIT_UNAVAILABLE = 3, /* not executed: no primary/proxy could take it */
    EXIT_BUSY = 4,        /* not executed: the cluster is overloaded */
    EXIT_TIMEOUT = 5,     /* no answer in time: outcome unknown */
    EXIT_BAD_REQUEST = 6, /* the cluster refused the request as malformed */
    EXIT_APP = 7,         /* the app answered an error (e.g. incr of a non-integer) */
    EXIT_PROTOCOL = 8,    /* an answer the client cannot make sense of */
    EXIT_OTHER = 9        /* out of memory, ZeroMQ failure */
};

#define ENDPOINTS_MAX 16

static void usage(FILE *f) {
    fprintf(f,
            "usage: zvsr-kv [options] COMMAND [ARGS]\n"
            "\n"
            "commands (values are strings):\n"
            "  get KEY                   print KEY's value (a str as is, anything else as JSON)\n"
            "  put KEY VALUE             set KEY; prints OK\n"
            "  put --lease ID KEY VALUE  ... attached to lease ID: KEY is deleted when the lease ends\n"
            "  del KEY                   delete KEY; prints deleted / not found\n"
            "  incr KEY [BY]             add BY (default 1) to the integer at KEY; prints the new value\n"
            "  cas KEY EXPECTED NEW      set KEY to NEW iff it holds EXPECTED; prints ok/failed and the value\n"
            "  cas --missing KEY NEW     set KEY to NEW iff KEY is missing\n"
            "  lock NAME OWNER           take lock NAME; prints 'ok TOKEN' or 'held OWNER TOKEN'\n"
            "                            ('delayed TOKEN': in its lock delay, nobody may take it yet)\n"
            "  lock --lease ID NAME OWNER  ... attached to lease ID: released when the lease ends\n"
            "  unlock NAME OWNER         release lock NAME held by OWNER; prints ok / not held\n"
            "  lease grant TTL_MS [LOCK_DELAY_MS]\n"
            "                            grant a lease of TTL_MS ms of cluster time; prints its id\n"
            "  lease keepalive ID        renew lease ID; prints the ms it has left\n"
            "  lease revoke ID           end lease ID (deleting its keys, releasing its locks);\n"
            "                            prints 'revoked [KEYS]' or 'not live'\n"
            "\n"
            "options:\n"
            "  -e, --endpoint EP         proxy endpoint (repeatable; default tcp://127.0.0.1:7700)\n"
            "  -d, --direct              the endpoints are every replica's client endpoint, in index order\n"
            "  -t, --timeout-ms N        bound on the call (default 5000)\n"
            "      --curve-server-key K  CurveZMQ: server public key, Z85 (or $ZVSR_CURVE_SERVER_KEY)\n"
            "      --curve-public-key K  CurveZMQ: client public key (or $ZVSR_CURVE_PUBLIC_KEY)\n"
            "      --curve-secret-key K  CurveZMQ: client secret key (or $ZVSR_CURVE_SECRET_KEY)\n"
            "  -v, --verbose             print the client_id, request number and view to stderr\n"
            "  -h, --help\n"
            "\n"
            "exit status: 0 done; 1 answered no (missing key, not deleted, cas mismatch, lock held,\n"
            "not unlocked, lease not live to revoke); 2 usage; 3 unavailable (not executed); 4 busy\n"
            "(not executed); 5 timeout (outcome unknown); 6 bad request; 7 app error (e.g. lease_not_found);\n"
            "8 protocol error; 9 other error\n");
}

static int exit_code(zvsr_status status) {
    switch (status) {
    case ZVSR_OK: return 0;
    case ZVSR_ERR_UNAVAILABLE: return EXIT_UNAVAILABLE;
    case ZVSR_ERR_BUSY: return EXIT_BUSY;
    case ZVSR_ERR_TIMEOUT: return EXIT_TIMEOUT;
    case ZVSR_ERR_BAD_REQUEST: return EXIT_BAD_REQUEST;
    case ZVSR_ERR_APP: return EXIT_APP;
    case ZVSR_ERR_PROTOCOL: return EXIT_PROTOCOL;
    case ZVSR_ERR_INVALID: return EXIT_USAGE;
    case ZVSR_ERR_SESSION_EXPIRED: return EXIT_TIMEOUT; /* like a timeout: outcome unknown */
    case ZVSR_ERR_NOMEM:
    case ZVSR_ERR_ZMQ: return EXIT_OTHER;
    }
    return EXIT_OTHER;
}

static int fail(const zvsr_client *client, zvsr_status status) {
    if (status == ZVSR_ERR_APP)
        fprintf(stderr, "zvsr-kv: app error %s: %s\n", zvsr_app_error(client), zvsr_last_message(client));
    else
        fprintf(stderr, "zvsr-kv: %s: %s\n", zvsr_status_name(status), zvsr_last_message(client));
    return exit_code(status);
}

static bool parse_int(const char *text, long long low, long long high, long long *out) {
    if (text == NULL || *text == 0) return false;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno != 0 || *end != 0 || v < low || v > high) return false;
    *out = v;
    return true;
}

/* A decimal uint64_t, digits only. */
static bool parse_u64(const char *text, uint64_t *out) {
    if (text == NULL || *text < '0' || *text > '9') return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno != 0 || *end != 0) return false;
    *out = (uint64_t)v;
    return true;
}

static void print_value(const zvsr_buffer *text, zvsr_value_kind kind) {
    if (kind == ZVSR_VALUE_NIL) return;
    fwrite(text->data, 1, text->len, stdout);
    fputc('\n', stdout);
}

/* cas shows the value after the op as JSON (a str quoted), so "null" and a missing key differ */
static void print_json_value(const zvsr_buffer *text, zvsr_value_kind kind) {
    if (kind == ZVSR_VALUE_NIL) {
        fputs("null", stdout);
    } else if (kind == ZVSR_VALUE_STR) {
        fputc('"', stdout);
        for (size_t k = 0; k < text->len; k++) {
            unsigned char ch = text->data[k];
            if (ch == '"' || ch == '\\') fprintf(stdout, "\\%c", ch);
            else if (ch < 0x20) fprintf(stdout, "\\u%04x", ch);
            else fputc(ch, stdout);
        }
        fputc('"', stdout);
    } else {
        fwrite(text->data, 1, text->len, stdout);
    }
}

static bool need(int have, int want, const char *command) {
    if (have == want) return true;
    fprintf(stderr, "zvsr-kv: %s takes %d argument%s, got %d (see --help)\n", command, want,
            want == 1 ? "" : "s", have);
    return false;
}

int main(int argc, char **argv) {
    const char *endpoints[ENDPOINTS_MAX];
    size_t n = 0;
    zvsr_options options;
    zvsr_options_init(&options);
    options.curve_server_key = getenv("ZVSR_CURVE_SERVER_KEY");
    options.curve_public_key = getenv("ZVSR_CURVE_PUBLIC_KEY");
    options.curve_secret_key = getenv("ZVSR_CURVE_SECRET_KEY");
    bool verbose = false;

    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *arg = argv[i];
        const char *value = NULL;
        const char *eq = strchr(arg, '=');
        char name[64];
        if (!strcmp(arg, "--")) {
            i++;
            break;
        }
        if (strncmp(arg, "--", 2) == 0 && eq != NULL && (size_t)(eq - arg) < sizeof name) {
            memcpy(name, arg, (size_t)(eq - arg));
            name[eq - arg] = 0;
            arg = name;
            value = eq + 1;
        }
        bool takes_value = !strcmp(arg, "-e") || !strcmp(arg, "--endpoint") || !strcmp(arg, "-t") ||
                           !strcmp(arg, "--timeout-ms") || !strcmp(arg, "--curve-server-key") ||
                           !strcmp(arg, "--curve-public-key") || !strcmp(arg, "--curve-secret-key");
        if (takes_value && value == NULL) {
            if (i + 1 >= argc) {
                fprintf(stderr, "zvsr-kv: %s needs a value\n", arg);
                return EXIT_USAGE;
            }
            value = argv[++i];
        } else if (!takes_value && value != NULL) {
            fprintf(stderr, "zvsr-kv: %s takes no value\n", arg);
            return EXIT_USAGE;
        }
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(arg, "-d") || !strcmp(arg, "--direct")) {
            options.direct = true;
        } else if (!strcmp(arg, "-v") || !strcmp(arg, "--verbose")) {
            verbose = true;
        } else if (!strcmp(arg, "-e") || !strcmp(arg, "--endpoint")) {
            if (n == ENDPOINTS_MAX) {
                fprintf(stderr, "zvsr-kv: at most %d endpoints\n", ENDPOINTS_MAX);
                return EXIT_USAGE;
            }
            endpoints[n++] = value;
        } else if (!strcmp(arg, "-t") || !strcmp(arg, "--timeout-ms")) {
            long long ms;
            if (!parse_int(value, 1, 24LL * 3600 * 1000, &ms)) {
                fprintf(stderr, "zvsr-kv: --timeout-ms wants a positive number of milliseconds, not '%s'\n", value);
                return EXIT_USAGE;
            }
            options.timeout_ms = (int)ms;
        } else if (!strcmp(arg, "--curve-server-key")) {
            options.curve_server_key = value;
        } else if (!strcmp(arg, "--curve-public-key")) {
            options.curve_public_key = value;
        } else if (!strcmp(arg, "--curve-secret-key")) {
            options.curve_secret_key = value;
        } else {
            fprintf(stderr, "zvsr-kv: unknown option %s (see --help)\n", argv[i]);
            return EXIT_USAGE;
        }
    }
    if (i >= argc) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (n == 0) endpoints[n++] = "tcp://127.0.0.1:7700";

    const char *command = argv[i];
    char **args = argv + i + 1;
    int nargs = argc - i - 1;
    bool cas_missing = false;
    if (!strcmp(command, "cas") && nargs > 0 && !strcmp(args[0], "--missing")) {
        cas_missing = true;
        args++;
        nargs--;
    }
    /* put / lock --lease ID */
    bool with_lease = false;
    uint64_t lease = 0;
    if ((!strcmp(command, "put") || !strcmp(command, "lock")) && nargs > 0 && !strcmp(args[0], "--lease")) {
        if (nargs < 2 || !parse_u64(args[1], &lease)) {
            fprintf(stderr, "zvsr-kv: %s --lease wants a lease id (an unsigned integer)\n", command);
            return EXIT_USAGE;
        }
        with_lease = true;
        args += 2;
        nargs -= 2;
    }
    /* lease grant|keepalive|revoke */
    const char *lease_command = NULL;
    uint64_t ttl_ms = 0, lock_delay_ms = 0;
    if (!strcmp(command, "lease")) {
        lease_command = nargs > 0 ? args[0] : "";
        args++;
        nargs--;
        if (!strcmp(lease_command, "grant")) {
            if (nargs != 1 && !need(nargs, 2, "lease grant")) return EXIT_USAGE;
            if (!parse_u64(args[0], &ttl_ms) || (nargs == 2 && !parse_u64(args[1], &lock_delay_ms))) {
                fprintf(stderr, "zvsr-kv: lease grant: TTL_MS and LOCK_DELAY_MS are milliseconds\n");
                return EXIT_USAGE;
            }
        } else if (!strcmp(lease_command, "keepalive") || !strcmp(lease_command, "revoke")) {
            if (!need(nargs, 1, !strcmp(lease_command, "revoke") ? "lease revoke" : "lease keepalive"))
                return EXIT_USAGE;
            if (!parse_u64(args[0], &lease)) {
                fprintf(stderr, "zvsr-kv: lease %s: ID must be a lease id, not '%s'\n", lease_command, args[0]);
                return EXIT_USAGE;
            }
        } else {
            fprintf(stderr, "zvsr-kv: lease wants grant, keepalive or revoke, not '%s' (see --help)\n",
                    lease_command);
            return EXIT_USAGE;
        }
    }
    /* check the command line before connecting */
    long long by = 1;
    if (lease_command != NULL) {
        /* checked above */
    } else if (!strcmp(command, "get") || !strcmp(command, "del")) {
        if (!need(nargs, 1, command)) return EXIT_USAGE;
    } else if (!strcmp(command, "put") || !strcmp(command, "lock") || !strcmp(command, "unlock")) {
        if (!need(nargs, 2, command)) return EXIT_USAGE;
    } else if (!strcmp(command, "incr")) {
        if (nargs != 1 && !need(nargs, 2, command)) return EXIT_USAGE;
        if (nargs == 2 && !parse_int(args[1], INT64_MIN, INT64_MAX, &by)) {
            fprintf(stderr, "zvsr-kv: incr: BY must be an integer, not '%s'\n", args[1]);
            return EXIT_USAGE;
        }
    } else if (!strcmp(command, "cas")) {
        if (!need(nargs, cas_missing ? 2 : 3, cas_missing ? "cas --missing" : "cas")) return EXIT_USAGE;
    } else {
        fprintf(stderr, "zvsr-kv: unknown command '%s' (see --help)\n", command);
        return EXIT_USAGE;
    }

    zvsr_client *client = NULL;
    zvsr_status status = zvsr_client_new(endpoints, n, &options, &client);
    if (status != ZVSR_OK) return fail(NULL, status);

    int code = 0;
    zvsr_buffer text = ZVSR_BUFFER_INIT;
    zvsr_value_kind kind = ZVSR_VALUE_NIL;
    if (lease_command != NULL && !strcmp(lease_command, "grant")) {
        status = zvsr_lease_grant(client, ttl_ms, lock_delay_ms, &lease);
        if (status == ZVSR_OK) printf("%" PRIu64 "\n", lease);
    } else if (lease_command != NULL && !strcmp(lease_command, "keepalive")) {
        uint64_t remaining_ms = 0;
        status = zvsr_lease_keepalive(client, lease, &remaining_ms);
        if (status == ZVSR_OK) printf("%" PRIu64 "\n", remaining_ms);
    } else if (lease_command != NULL) { /* revoke */
        bool revoked = false;
        status = zvsr_lease_revoke(client, lease, &revoked, &text);
        if (status == ZVSR_OK) {
            if (revoked) printf("revoked %s\n", text.data ? (const char *)text.data : "[]");
            else puts("not live");
            code = revoked ? 0 : EXIT_NO;
        }
    } else if (!strcmp(command, "get")) {
        status = zvsr_get(client, args[0], &text, &kind);
        if (status == ZVSR_OK) {
            print_value(&text, kind);
            if (kind == ZVSR_VALUE_NIL) {
                fprintf(stderr, "zvsr-kv: %s: not found\n", args[0]);
                code = EXIT_NO;
            }
        }
    } else if (!strcmp(command, "put")) {
        status = with_lease ? zvsr_put_with_lease(client, args[0], args[1], lease)
                            : zvsr_put(client, args[0], args[1]);
        if (status == ZVSR_OK) puts("OK");
    } else if (!strcmp(command, "del")) {
        bool existed = false;
        status = zvsr_del(client, args[0], &existed);
        if (status == ZVSR_OK) {
            puts(existed ? "deleted" : "not found");
            code = existed ? 0 : EXIT_NO;
        }
    } else if (!strcmp(command, "incr")) {
        int64_t value = 0;
        status = zvsr_incr(client, args[0], (int64_t)by, &value);
        if (status == ZVSR_OK) printf("%" PRId64 "\n", value);
    } else if (!strcmp(command, "cas")) {
        bool swapped = false;
        const char *expected = cas_missing ? NULL : args[1];
        const char *new_value = cas_missing ? args[1] : args[2];
        status = zvsr_cas(client, args[0], expected, new_value, &swapped, &text, &kind);
        if (status == ZVSR_OK) {
            fputs(swapped ? "ok " : "failed ", stdout);
            print_json_value(&text, kind);
            fputc('\n', stdout);
            code = swapped ? 0 : EXIT_NO;
        }
    } else if (!strcmp(command, "lock")) {
        bool acquired = false;
        uint64_t token = 0;
        status = with_lease ? zvsr_lock_with_lease(client, args[0], args[1], lease, &acquired, &token, &text)
                            : zvsr_lock(client, args[0], args[1], &acquired, &token, &text);
        if (status == ZVSR_OK) {
            if (acquired) {
                printf("ok %" PRIu64 "\n", token);
            } else if (text.len == 0) { /* no holder: its lease expired, and the lock delay is running */
                printf("delayed %" PRIu64 "\n", token);
                code = EXIT_NO;
            } else {
                printf("held %s %" PRIu64 "\n", text.data ? (const char *)text.data : "", token);
                code = EXIT_NO;
            }
        }
    } else { /* unlock */
        bool released = false;
        status = zvsr_unlock(client, args[0], args[1], &released);
        if (status == ZVSR_OK) {
            puts(released ? "ok" : "not held");
            code = released ? 0 : EXIT_NO;
        }
    }
    if (verbose)
        fprintf(stderr, "zvsr-kv: client_id=%" PRIu64 " request_number=%" PRIu64 " view=%" PRIu64 " status=%s\n",
                zvsr_client_id(client), zvsr_client_request_number(client), zvsr_client_view(client),
                zvsr_status_name(status));
    if (status != ZVSR_OK) code = fail(client, status);
    zvsr_buffer_free(&text);
    zvsr_client_free(client);
    if (fflush(stdout) != 0 && code == 0) code = EXIT_OTHER;
    return code;
}
