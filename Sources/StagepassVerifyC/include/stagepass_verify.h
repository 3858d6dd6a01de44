/*
 * stagepass_verify.h: the C ABI of the Stagepass offline token verifier (libStagepassVerifyC.so).
 *
 * A deploy endpoint written in C, Go (cgo), Python (ctypes) or Rust (bindgen) embeds the same verifier the
 * Swift library exposes: the same checks, in the same order, with the same stable error codes
 * (Specs/token-profile.md, "Error codes").
 *
 * Memory: every buffer is owned by the caller. A handle is opaque; free it with stagepass_verifier_free.
 * Threads: one handle may be used by many threads at once; stagepass_verifier_set_* may race with
 *          stagepass_verify safely (each call sees either the old or the new key set / status list).
 * Strings: NUL-terminated UTF-8 unless a length is given.
 */
#ifndef STAGEPASS_VERIFY_H
#define STAGEPASS_VERIFY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Result codes. 0 is success; 1..19 are token verdicts (stable, same order as the Swift checks);
 * 100+ are errors of the call itself (bad argument, buffer too small, bad configuration). */
enum stagepass_result {
    STAGEPASS_OK = 0,
    STAGEPASS_MALFORMED = 1,
    STAGEPASS_WRONG_TYPE = 2,
    STAGEPASS_UNSUPPORTED_CRITICAL_HEADER = 3,
    STAGEPASS_FORBIDDEN_HEADER = 4,
    STAGEPASS_UNKNOWN_KEY = 5,
    STAGEPASS_UNSUPPORTED_ALGORITHM = 6,
    STAGEPASS_BAD_SIGNATURE = 7,
    STAGEPASS_WRONG_ISSUER = 8,
    STAGEPASS_WRONG_AUDIENCE = 9,
    STAGEPASS_MISSING_CLAIM = 10,
    STAGEPASS_EXPIRED = 11,
    STAGEPASS_NOT_YET_VALID = 12,
    STAGEPASS_ISSUED_IN_FUTURE = 13,
    STAGEPASS_LIFETIME_EXCEEDED = 14,
    STAGEPASS_ROLE_MISMATCH = 15,
    STAGEPASS_STAGE_MISMATCH = 16,
    STAGEPASS_PIPELINE_MISMATCH = 17,
    STAGEPASS_REVOKED = 18,
    STAGEPASS_STATUS_UNAVAILABLE = 19,

    STAGEPASS_ERR_INVALID_ARGUMENT = 100,
    STAGEPASS_ERR_BUFFER_TOO_SMALL = 101,
    STAGEPASS_ERR_BAD_JWKS = 102,
    STAGEPASS_ERR_BAD_STATUS_LIST = 103,
    STAGEPASS_ERR_STALE_STATUS_LIST = 104,
    /* A duration outside the verifier bounds (Specs/token-profile.md, "Verifier bounds"): nothing was created or
     * changed. */
    STAGEPASS_ERR_INVALID_CONFIGURATION = 105,
};

typedef struct stagepass_verifier stagepass_verifier;

/* The stable lower-case code of a result ("bad_signature", …); "unknown" for values not in the enum. */
const char *stagepass_result_name(int result);

/* Create a verifier. audiences: one or more accepted audiences separated by ','.
 * jwks_json: the JWKS document (RFC 7517 §5). leeway_seconds: 0...300, or -1 for the default (30);
 * max_lifetime_seconds: 1...86400, or 0 for the default (3600). Any other value (a negative leeway or lifetime,
 * a leeway above 5 minutes, a lifetime above 24 hours) is refused with STAGEPASS_ERR_INVALID_CONFIGURATION.
 * Returns NULL and sets *result (if non-NULL) on failure. */
stagepass_verifier *stagepass_verifier_new(const char *issuer, const char *audiences, const char *jwks_json,
                                           int64_t leeway_seconds, int64_t max_lifetime_seconds, int *result);

/* Replace the key set (e.g. after the caller re-fetched /.well-known/jwks.json). */
int stagepass_verifier_set_jwks(stagepass_verifier *verifier, const char *jwks_json);

/* Install a status list: the compact `statuslist+jwt` as served at its uri (surrounding whitespace ignored),
 * verified before it is installed: signature against the current JWKS (same rules as tokens, ES256 low-S only),
 * typ "statuslist+jwt", string sub, integer iat not in the future, integer exp (if any) not passed, positive ttl
 * (if any), a decodable list. fetched_at: when the caller obtained it (unix seconds, 0 = now); the list is judged
 * as of then. max_age_seconds: fail-closed age limit, 1...86400 (tokens get STAGEPASS_STATUS_UNAVAILABLE once the
 * list is older); 0 means the list's own exp only; anything else (negative, above 24 hours) returns
 * STAGEPASS_ERR_INVALID_CONFIGURATION before the document is looked at (nothing is installed; status checking is
 * switched on all the same, fail closed).
 * The verifier holds one list per sub: a list replaces the installed one with the same sub only if its iat is not
 * smaller. Returns
 *   STAGEPASS_OK                     installed (or the same document again);
 *   STAGEPASS_ERR_BAD_STATUS_LIST    unusable (not a JWS, e.g. an HTTP error page or "a.b.c"; bad signature;
 *                                    unknown kid; wrong typ; expired; malformed claims): nothing changed;
 *   STAGEPASS_ERR_STALE_STATUS_LIST  usable but older than the installed list with the same sub, which is kept;
 *   STAGEPASS_ERR_INVALID_ARGUMENT   verifier or status_list_jwt is NULL;
 *   STAGEPASS_ERR_INVALID_CONFIGURATION  max_age_seconds out of bounds: nothing installed.
 * Whatever it returns, from the first call on status checking is on: every token must reference an installed,
 * unexpired list that is not older than max_age, or it is STAGEPASS_STATUS_UNAVAILABLE (never STAGEPASS_OK). */
int stagepass_verifier_set_status_list(stagepass_verifier *verifier, const char *status_list_jwt,
                                       int64_t fetched_at, int64_t max_age_seconds);

/* Verify a compact JWS. role, stage, pipeline: the caller's requirements, or NULL for "any".
 * role may list several accepted roles separated by ','. pipeline is a pattern over client_id where '*'
 * matches any run of characters. now: unix seconds, 0 = the system clock.
 * On STAGEPASS_OK the verified claims (JSON object, UTF-8, NUL-terminated) are written to claims_out when
 * claims_out is non-NULL; *claims_len (if non-NULL) receives the length without the NUL. If the buffer is too
 * small, STAGEPASS_ERR_BUFFER_TOO_SMALL is returned and *claims_len holds the length needed.
 * On a rejection, detail_out (if non-NULL) receives a short human-readable reason. */
int stagepass_verify(stagepass_verifier *verifier, const char *token, size_t token_len,
                     const char *role, const char *stage, const char *pipeline, int64_t now,
                     char *claims_out, size_t claims_cap, size_t *claims_len,
                     char *detail_out, size_t detail_cap);

void stagepass_verifier_free(stagepass_verifier *verifier);

#ifdef __cplusplus
}
#endif
#endif
