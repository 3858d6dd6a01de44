/*
 * verify_vectors: runs every case of Specs/vectors/conformance.json through the Stagepass C ABI.
 *
 *   cc -o out/verify_vectors Tests/interop/c/verify_vectors.c -I Sources/StagepassVerifyC/include \
 *      -L<libdir> -Wl,-rpath,<libdir> -lStagepassVerifyC -ljansson
 *   out/verify_vectors [Specs/vectors/conformance.json]
 *
 * Per case: stagepass_verifier_new_with_dpop(issuer, audiences joined by ',', jwks, leeway, max_lifetime, 0,
 * dpop_replay_capacity or 0); each status
 * list installed with fetched_at = now and max_age = status_max_age (0 when absent), its result name compared
 * with status_list_results; stagepass_verify with the
 * case's requirements (roles joined by ',') and now, or, for a case with `dpop`, stagepass_verify_dpop with its
 * proof, method and url after each of `dpop_earlier` (each must be accepted). The verdict's stagepass_result_name
 * must equal `expected`.
 * Prints one line per mismatch and a summary; exits 0 only if every case matched.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stagepass_verify.h"

#define CLAIMS_CAP 65536
#define DETAIL_CAP 512

/* Joins the strings of a JSON array with ','. Returns NULL for a missing or empty array; caller frees. */
static char *join_strings(const json_t *array) {
    if (!json_is_array(array) || json_array_size(array) == 0) return NULL;
    size_t total = 1, i;
    json_t *item;
    json_array_foreach(array, i, item) {
        if (!json_is_string(item)) return NULL;
        total += json_string_length(item) + 1;
    }
    char *out = calloc(total, 1);
    if (!out) return NULL;
    json_array_foreach(array, i, item) {
        if (i > 0) strcat(out, ",");
        strcat(out, json_string_value(item));
    }
    return out;
}

static const char *optional_string(const json_t *object, const char *key) {
    const json_t *v = object ? json_object_get(object, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static json_int_t optional_integer(const json_t *object, const char *key, json_int_t fallback) {
    const json_t *v = json_object_get(object, key);
    return json_is_integer(v) ? json_integer_value(v) : fallback;
}

/* Runs one case; returns 1 when the verdict matches, 0 otherwise (and prints why). */
static int run_case(const json_t *c) {
    const char *id = optional_string(c, "id");
    const char *expected = optional_string(c, "expected");
    const json_t *token = json_object_get(c, "token");
    const json_t *config = json_object_get(c, "config");
    const json_t *requirements = json_object_get(c, "requirements");
    json_int_t now = optional_integer(c, "now", 0);
    if (!id || !expected || !json_is_string(token) || !json_is_object(config)) {
        printf("FAIL %s: case is not well formed\n", id ? id : "(no id)");
        return 0;
    }

    char *audiences = join_strings(json_object_get(config, "audiences"));
    char *jwks = json_dumps(json_object_get(c, "jwks"), JSON_COMPACT);
    int result = -1;
    stagepass_verifier *verifier = stagepass_verifier_new_with_dpop(
        optional_string(config, "issuer"), audiences ? audiences : "", jwks ? jwks : "",
        optional_integer(config, "leeway", -1), optional_integer(config, "max_lifetime", 0), 0,
        optional_integer(config, "dpop_replay_capacity", 0), &result);
    free(audiences);
    free(jwks);
    if (!verifier) {
        printf("FAIL %s: stagepass_verifier_new failed with %d (%s)\n", id, result, stagepass_result_name(result));
        return 0;
    }

    int ok = 1;
    json_int_t max_age = optional_integer(c, "status_max_age", 0);
    const json_t *lists = json_object_get(c, "status_lists");
    const json_t *results = json_object_get(c, "status_list_results");
    size_t i;
    json_t *list;
    json_array_foreach(lists, i, list) {
        int rc = stagepass_verifier_set_status_list(verifier, json_string_value(list), now, max_age);
        /* Each install's result is part of the vector: "ok", "bad_status_list" or "stale_status_list". */
        const char *want = json_string_value(json_array_get(results, i));
        if (!want || strcmp(stagepass_result_name(rc), want) != 0) {
            printf("FAIL %s: stagepass_verifier_set_status_list(list %zu) returned %d (%s), expected %s\n", id, i, rc,
                   stagepass_result_name(rc), want ? want : "(missing)");
            ok = 0;
        }
    }

    char *roles = join_strings(requirements ? json_object_get(requirements, "roles") : NULL);
    static char claims[CLAIMS_CAP];
    char detail[DETAIL_CAP] = "";
    size_t claims_len = 0;
    const json_t *earlier_list = json_object_get(c, "dpop_earlier");
    json_t *earlier;
    json_array_foreach(earlier_list, i, earlier) {
        int rc = stagepass_verify_dpop(verifier, json_string_value(token), json_string_length(token), roles,
                                       optional_string(requirements, "stage"), optional_string(requirements, "pipeline"),
                                       optional_string(earlier, "proof"), optional_string(earlier, "method"),
                                       optional_string(earlier, "url"), now, NULL, 0, NULL, detail, sizeof detail);
        if (rc != STAGEPASS_OK) {
            printf("FAIL %s: earlier DPoP presentation %zu refused: %s (%s)\n", id, i, stagepass_result_name(rc), detail);
            ok = 0;
        }
    }
    const json_t *dpop = json_object_get(c, "dpop");
    if (json_is_object(dpop)) {
        result = stagepass_verify_dpop(verifier, json_string_value(token), json_string_length(token), roles,
                                       optional_string(requirements, "stage"), optional_string(requirements, "pipeline"),
                                       optional_string(dpop, "proof"), optional_string(dpop, "method"),
                                       optional_string(dpop, "url"), now, claims, sizeof claims, &claims_len, detail,
                                       sizeof detail);
    } else {
        result = stagepass_verify(verifier, json_string_value(token), json_string_length(token), roles,
                                  optional_string(requirements, "stage"), optional_string(requirements, "pipeline"), now,
                                  claims, sizeof claims, &claims_len, detail, sizeof detail);
    }
    free(roles);
    stagepass_verifier_free(verifier);

    const char *got = stagepass_result_name(result);
    if (strcmp(got, expected) != 0) {
        printf("FAIL %s: expected %s, got %s (%d)%s%s\n", id, expected, got, result, detail[0] ? ": " : "", detail);
        return 0;
    }
    if (result == STAGEPASS_OK) {
        json_error_t error;
        json_t *parsed = json_loadb(claims, claims_len, 0, &error);
        if (!json_is_object(parsed)) {
            printf("FAIL %s: claims output is not a JSON object: %s\n", id, error.text);
            ok = 0;
        }
        json_decref(parsed);
    }
    return ok;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "Specs/vectors/conformance.json";
    json_error_t error;
    json_t *doc = json_load_file(path, 0, &error);
    if (!doc) {
        fprintf(stderr, "verify_vectors: cannot read %s: %s (line %d)\n", path, error.text, error.line);
        return 2;
    }
    const json_t *cases = json_object_get(doc, "cases");
    if (!json_is_array(cases) || json_array_size(cases) == 0) {
        fprintf(stderr, "verify_vectors: %s has no cases\n", path);
        json_decref(doc);
        return 2;
    }

    size_t passed = 0, total = json_array_size(cases), i;
    json_t *c;
    json_array_foreach(cases, i, c) passed += (size_t)run_case(c);

    printf("verify_vectors: %zu/%zu cases passed, %zu failed\n", passed, total, total - passed);
    json_decref(doc);
    return passed == total ? 0 : 1;
}
