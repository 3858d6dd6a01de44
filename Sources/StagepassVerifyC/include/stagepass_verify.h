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

/* Result codes. 0 is success; 1..24 are token verdicts (stable, same order as the Swift checks);
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
    /* Sender-constrained tokens (DPoP, RFC 9449), checked after status; added after 19, never renumbered. */
    STAGEPASS_DPOP_REQUIRED = 20,          /* a cnf.jkt token presented without a proof (stagepass_verify) */
    STAGEPASS_BAD_DPOP_PROOF = 21,         /* the proof fails a check: form, typ, alg, jwk, signature, htm, htu, iat, ath */
    STAGEPASS_DPOP_KEY_MISMATCH = 22,      /* the proof's key is not the token's cnf.jkt, or the token is not bound */
    STAGEPASS_DPOP_REPLAYED = 23,          /* the proof's jti was already accepted by this verifier */
    STAGEPASS_DPOP_REPLAY_CACHE_FULL = 24, /* the replay cache is full of unexpired proofs: refused, fail closed */

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

/* stagepass_verifier_new with the DPoP settings (RFC 9449 §11.1): dpop_proof_max_age_seconds, how old a proof may be
 * (its iat before now, plus the leeway): 1...300, or 0 for the default (60); dpop_replay_capacity, how many accepted
 * proofs the handle remembers for the replay check: 1...2147483647, or 0 for the default (65536). */
stagepass_verifier *stagepass_verifier_new_with_dpop(const char *issuer, const char *audiences, const char *jwks_json,
                                                     int64_t leeway_seconds, int64_t max_lifetime_seconds,
                                                     int64_t dpop_proof_max_age_seconds, int64_t dpop_replay_capacity,
                                                     int *result);

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

/* stagepass_verify for a request that used the DPoP authorization scheme (RFC 9449 §7.1): dpop_proof is the
 * request's DPoP header, method and url the request's method (e.g. "POST") and target URI (query and fragment are
 * ignored). A token bound with cnf.jkt is accepted only with a valid, fresh proof by that key for this method and URL
 * whose ath is the token's hash, seen once by this verifier (the replay cache is per handle: 65536 proofs; when full
 * of unexpired proofs, new ones get STAGEPASS_DPOP_REPLAY_CACHE_FULL rather than an old one being forgotten).
 * dpop_proof NULL is a bearer presentation: exactly stagepass_verify (a bound token gets STAGEPASS_DPOP_REQUIRED).
 * A proof with a token that has no cnf.jkt gets STAGEPASS_DPOP_KEY_MISMATCH. method and url must be non-NULL when
 * dpop_proof is (else STAGEPASS_ERR_INVALID_ARGUMENT). Other arguments and outputs as stagepass_verify. */
int stagepass_verify_dpop(stagepass_verifier *verifier, const char *token, size_t token_len,
                          const char *role, const char *stage, const char *pipeline,
                          const char *dpop_proof, const char *method, const char *url, int64_t now,
                          char *claims_out, size_t claims_cap, size_t *claims_len,
                          char *detail_out, size_t detail_cap);

void stagepass_verifier_free(stagepass_verifier *verifier);

#ifdef __cplusplus
}
#endif
#endif
