/* A Kumo function in C: answers "hello, NAME" for ?name=NAME.
 *
 *   cc -O2 -I ../../sdk/c -o bootstrap main.c
 *   (deploy bootstrap with runtime "custom", entrypoint "bootstrap")
 */
#define KUMO_FUNCTION_IMPLEMENTATION
#include "kumo_function.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *handle(const kumo_event *event, char **error) {
    size_t query_len = 0, name_len = 0, method_len = 0;
    const char *method = kumo_json_member(event->json, event->len, "method", &method_len);
    if (!method) {
        *error = kumo_strdup("call me over HTTP: the event has no method");
        return NULL;
    }
    const char *query = kumo_json_member(event->json, event->len, "query", &query_len);
    const char *name = query ? kumo_json_member(query, query_len, "name", &name_len) : NULL;
    if (!name || name[0] != '"') {
        name = "\"world\"";
        name_len = 7;
    }
    printf("greeting %.*s\n", (int)name_len, name);
    /* name is a JSON string: its quotes and escapes are kept as they are. */
    const char *head = "{\"statusCode\":200,\"headers\":{\"content-type\":\"text/plain\"},\"body\":\"hello, ";
    size_t size = strlen(head) + name_len + 16;
    char *out = malloc(size);
    if (!out) return NULL;
    snprintf(out, size, "%s%.*s}", head, (int)(name_len - 1), name + 1);
    return out;
}

int main(void) { return kumo_serve(handle); }
