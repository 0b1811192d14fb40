/*
 * kumo_function.h: write a Kumo function in C (runner protocol version 1).
 *
 * A single-header library with no dependencies beyond the C library. In
 * exactly one file of your program:
 *
 *     #define KUMO_FUNCTION_IMPLEMENTATION
 *     #include "kumo_function.h"
 *
 *     static char *handle(const kumo_event *event, char **error) {
 *         // event->json is the event as JSON text (event->len bytes, not
 *         // NUL-terminated inside the frame, but a NUL follows it).
 *         return kumo_strdup("{\"statusCode\":200,\"body\":\"hello from C\"}");
 *     }
 *
 *     int main(void) { return kumo_serve(handle); }
 *
 * Build it (`cc -O2 -o bootstrap main.c`), deploy it with runtime
 * `custom` and entrypoint `bootstrap`. The handler returns the output as
 * JSON text in a malloc'd string (the library frees it), or NULL after
 * setting *error to a malloc'd message: the call then fails with that
 * message, and the instance keeps serving.
 *
 * kumo_serve() does the rest of docs/runner-protocol.md: `hello`, `load`
 * (answered `loaded`: a C program has nothing left to load), framed
 * `invoke`/`result` on fd 3, the exit on end of file. Anything the program
 * prints to stdout or stderr becomes the run's logs.
 */
#ifndef KUMO_FUNCTION_H
#define KUMO_FUNCTION_H

#include <stddef.h>

typedef struct {
    const char *json;          /* the event, as JSON text, NUL-terminated */
    size_t len;                /* its length in bytes */
    const char *request_id;    /* the invocation id, NUL-terminated */
    long long deadline_ms;     /* when the call times out (Unix ms), or 0 */
    const char *context_json;  /* the whole context object, NUL-terminated */
} kumo_event;

/* Returns the output as JSON text (malloc'd), or NULL with *error set. */
typedef char *(*kumo_handler)(const kumo_event *event, char **error);

/* Serves invocations until the host closes the channel; returns the exit
 * code (0 after a clean end, 2 after a protocol error). */
int kumo_serve(kumo_handler handler);

/* Helpers for building JSON output. */
char *kumo_strdup(const char *s);
/* `text` as a JSON string literal, quotes included (malloc'd). */
char *kumo_json_string(const char *text, size_t len);
/* Finds member `key` of the JSON object `json` (top level only) and
 * returns a pointer to its value, with *value_len set; NULL if absent. */
const char *kumo_json_member(const char *json, size_t len, const char *key, size_t *value_len);

#endif /* KUMO_FUNCTION_H */

#ifdef KUMO_FUNCTION_IMPLEMENTATION

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KUMO_CHANNEL_FD 3
#define KUMO_MAX_FRAME (16u * 1024u * 1024u)

char *kumo_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

static int kumo__write_all(const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(KUMO_CHANNEL_FD, data, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 1: read all, 0: end of file before any byte, -1: error or partial. */
static int kumo__read_all(char *data, size_t len) {
    size_t got = 0;
    while (got < len) {
        ssize_t n = read(KUMO_CHANNEL_FD, data + got, len - got);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        if (n == 0) return got == 0 ? 0 : -1;
        got += (size_t)n;
    }
    return 1;
}

/* Sends one frame whose payload is the concatenation of `parts`. */
static int kumo__send(const char *const *parts, const size_t *lens, int count) {
    size_t total = 0;
    for (int i = 0; i < count; i++) total += lens[i];
    if (total > KUMO_MAX_FRAME) return -2;
    char *frame = malloc(total + 4);
    if (!frame) return -1;
    frame[0] = (char)(total >> 24);
    frame[1] = (char)(total >> 16);
    frame[2] = (char)(total >> 8);
    frame[3] = (char)total;
    size_t at = 4;
    for (int i = 0; i < count; i++) {
        memcpy(frame + at, parts[i], lens[i]);
        at += lens[i];
    }
    int rc = kumo__write_all(frame, total + 4);
    free(frame);
    return rc;
}

static const char *kumo__ws(const char *p, const char *end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

/* The end of the JSON value at p (p must be at its first byte), or NULL. */
static const char *kumo__skip(const char *p, const char *end) {
    if (p >= end) return NULL;
    if (*p == '"') {
        for (p++; p < end; p++) {
            if (*p == '\\') {
                p++;
            } else if (*p == '"') {
                return p + 1;
            }
        }
        return NULL;
    }
    if (*p == '{' || *p == '[') {
        int depth = 0;
        while (p < end) {
            if (*p == '"') {
                p = kumo__skip(p, end);
                if (!p) return NULL;
                continue;
            }
            if (*p == '{' || *p == '[') depth++;
            if (*p == '}' || *p == ']') {
                depth--;
                if (depth == 0) return p + 1;
            }
            p++;
        }
        return NULL;
    }
    while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\n' &&
           *p != '\r' && *p != '\t')
        p++;
    return p;
}

const char *kumo_json_member(const char *json, size_t len, const char *key, size_t *value_len) {
    const char *end = json + len;
    const char *p = kumo__ws(json, end);
    size_t key_len = strlen(key);
    if (p >= end || *p != '{') return NULL;
    p = kumo__ws(p + 1, end);
    while (p < end && *p == '"') {
        const char *name_end = kumo__skip(p, end);
        if (!name_end) return NULL;
        /* Keys are compared as written: the protocol's keys hold no escapes. */
        int match = (size_t)(name_end - p - 2) == key_len && memcmp(p + 1, key, key_len) == 0;
        p = kumo__ws(name_end, end);
        if (p >= end || *p != ':') return NULL;
        p = kumo__ws(p + 1, end);
        const char *value_end = kumo__skip(p, end);
        if (!value_end) return NULL;
        if (match) {
            *value_len = (size_t)(value_end - p);
            return p;
        }
        p = kumo__ws(value_end, end);
        if (p < end && *p == ',') p = kumo__ws(p + 1, end);
    }
    return NULL;
}

/* The length of the valid UTF-8 sequence at p (1-4), or 0 if invalid. */
static size_t kumo__utf8_len(const unsigned char *p, size_t left) {
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c >= 0xE0 && c <= 0xEF) n = 3;
    else if (c >= 0xF0 && c <= 0xF4) n = 4;
    else return 0;
    if (n > left) return 0;
    if (c == 0xE0) lo = 0xA0;      /* no overlong forms */
    if (c == 0xED) hi = 0x9F;      /* no surrogates */
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;      /* nothing above U+10FFFF */
    if (p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return n;
}

char *kumo_json_string(const char *text, size_t len) {
    char *out = malloc(len * 6 + 3);
    if (!out) return NULL;
    size_t at = 0;
    out[at++] = '"';
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x80) {
            /* Valid UTF-8 is copied; anything else becomes '?', so the
             * frame stays valid JSON. */
            size_t n = kumo__utf8_len((const unsigned char *)text + i, len - i);
            if (n == 0) {
                out[at++] = '?';
            } else {
                memcpy(out + at, text + i, n);
                at += n;
                i += n - 1;
            }
        } else if (c == '"' || c == '\\') {
            out[at++] = '\\';
            out[at++] = (char)c;
        } else if (c == '\n') {
            out[at++] = '\\';
            out[at++] = 'n';
        } else if (c < 0x20) {
            at += (size_t)sprintf(out + at, "\\u%04x", c);
        } else {
            out[at++] = (char)c;
        }
    }
    out[at++] = '"';
    out[at] = '\0';
    return out;
}

/* A NUL-terminated copy of [p, p + n), with the quotes of a JSON string
 * taken off (escapes are kept as written: ids and names hold none). */
static char *kumo__copy(const char *p, size_t n, int unquote) {
    if (unquote && n >= 2 && p[0] == '"') {
        p++;
        n -= 2;
    }
    char *s = malloc(n + 1);
    if (!s) return NULL;
    memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

static int kumo__protocol_error(const char *what) {
    fprintf(stderr, "kumo-runner: protocol error: %s\n", what);
    return 2;
}

static int kumo__send_error(const char *id, size_t id_len, const char *type, const char *message) {
    char *type_json = kumo_json_string(type, strlen(type));
    char *message_json = kumo_json_string(message, strlen(message));
    if (!type_json || !message_json) {
        free(type_json);
        free(message_json);
        return -1;
    }
    const char *parts[] = {"{\"type\":\"result\",\"id\":", id, ",\"ok\":false,\"error\":{\"type\":",
                           type_json, ",\"message\":", message_json, ",\"traceback\":\"\"}}"};
    size_t lens[7];
    for (int i = 0; i < 7; i++) lens[i] = i == 1 ? id_len : strlen(parts[i]);
    int rc = kumo__send(parts, lens, 7);
    free(type_json);
    free(message_json);
    return rc;
}

static int kumo__invoke(kumo_handler handler, const char *msg, size_t len) {
    size_t id_len = 0, event_len = 0, context_len = 0;
    const char *id = kumo_json_member(msg, len, "id", &id_len);
    if (!id || id[0] != '"') return kumo__protocol_error("invoke needs a string id");
    const char *event = kumo_json_member(msg, len, "event", &event_len);
    if (!event) {
        event = "null";
        event_len = 4;
    }
    const char *context = kumo_json_member(msg, len, "context", &context_len);
    if (!context) {
        context = "{}";
        context_len = 2;
    }
    char *event_copy = kumo__copy(event, event_len, 0);
    char *context_copy = kumo__copy(context, context_len, 0);
    char *request_id = kumo__copy(id, id_len, 1);
    if (!event_copy || !context_copy || !request_id) {
        free(event_copy);
        free(context_copy);
        free(request_id);
        return 1;
    }
    size_t deadline_len = 0;
    const char *deadline = kumo_json_member(context_copy, context_len, "deadline_ms", &deadline_len);
    kumo_event ev = {event_copy, event_len, request_id, deadline ? strtoll(deadline, NULL, 10) : 0,
                     context_copy};
    char *error = NULL;
    char *output = handler(&ev, &error);
    fflush(stdout);
    fflush(stderr);
    int rc;
    if (output) {
        const char *parts[] = {"{\"type\":\"result\",\"id\":", id, ",\"ok\":true,\"output\":", output,
                               "}"};
        size_t lens[] = {strlen(parts[0]), id_len, strlen(parts[2]), strlen(output), 1};
        rc = kumo__send(parts, lens, 5);
        if (rc == -2)
            rc = kumo__send_error(id, id_len, "OutputTooLarge",
                                  "the handler's output is over the 16 MiB frame limit");
    } else {
        rc = kumo__send_error(id, id_len, "HandlerError", error ? error : "the handler failed");
    }
    free(output);
    free(error);
    free(event_copy);
    free(context_copy);
    free(request_id);
    return rc < 0 ? 1 : 0;
}

int kumo_serve(kumo_handler handler) {
    /* Programs this one starts must not inherit the channel. */
    if (fcntl(KUMO_CHANNEL_FD, F_SETFD, FD_CLOEXEC) < 0)
        return kumo__protocol_error("the channel (fd 3) is not open");
    static const char hello[] =
        "{\"type\":\"hello\",\"protocol\":1,\"runtime\":\"c\",\"runtime_version\":\"" __VERSION__ "\"}";
    const char *parts[] = {hello};
    size_t lens[] = {sizeof hello - 1};
    if (kumo__send(parts, lens, 1) < 0) return 1;
    int loaded = 0;
    for (;;) {
        unsigned char head[4];
        int r = kumo__read_all((char *)head, 4);
        if (r == 0) return 0; /* the host closed the channel */
        if (r < 0) return kumo__protocol_error("channel closed in the middle of a frame");
        uint32_t size = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
        if (size > KUMO_MAX_FRAME) return kumo__protocol_error("incoming frame over 16 MiB");
        char *msg = malloc(size + 1);
        if (!msg) return 1;
        if (size > 0 && kumo__read_all(msg, size) != 1) {
            free(msg);
            return kumo__protocol_error("channel closed in the middle of a frame");
        }
        msg[size] = '\0';
        size_t type_len = 0;
        const char *type = kumo_json_member(msg, size, "type", &type_len);
        int rc = 0;
        if (type && type_len == 6 && memcmp(type, "\"load\"", 6) == 0) {
            if (loaded) rc = kumo__protocol_error("second load message");
            loaded = 1;
            const char *p[] = {"{\"type\":\"loaded\"}"};
            size_t l[] = {strlen(p[0])};
            if (!rc && kumo__send(p, l, 1) < 0) rc = 1;
        } else if (type && type_len == 8 && memcmp(type, "\"invoke\"", 8) == 0) {
            rc = loaded ? kumo__invoke(handler, msg, size)
                        : kumo__protocol_error("invoke before load");
        } else {
            rc = kumo__protocol_error("unknown message type");
        }
        free(msg);
        if (rc) return rc;
    }
}

#endif /* KUMO_FUNCTION_IMPLEMENTATION */
