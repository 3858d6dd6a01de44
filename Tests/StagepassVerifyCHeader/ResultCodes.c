/* Compiled as C against the shipped header: the stable result codes a deployed C caller depends on
 * (Specs/token-profile.md, "Error codes") keep their values. */
#include "StagepassVerifyCHeader.h"

_Static_assert(STAGEPASS_OK == 0, "success is 0");
_Static_assert(STAGEPASS_MALFORMED == 1, "token verdicts start at 1");
_Static_assert(STAGEPASS_BAD_SIGNATURE == 7, "stable code");
_Static_assert(STAGEPASS_EXPIRED == 11, "stable code");
_Static_assert(STAGEPASS_STATUS_UNAVAILABLE == 19, "stable code");
_Static_assert(STAGEPASS_DPOP_REQUIRED == 20, "DPoP verdicts follow 19, never renumbered");
_Static_assert(STAGEPASS_BAD_DPOP_PROOF == 21, "stable code");
_Static_assert(STAGEPASS_DPOP_KEY_MISMATCH == 22, "stable code");
_Static_assert(STAGEPASS_DPOP_REPLAYED == 23, "stable code");
_Static_assert(STAGEPASS_DPOP_REPLAY_CACHE_FULL == 24, "token verdicts end at 24");
_Static_assert(STAGEPASS_ERR_INVALID_ARGUMENT == 100, "call errors start at 100");
_Static_assert(STAGEPASS_ERR_BAD_STATUS_LIST == 103, "stable code");

_Static_assert(STAGEPASS_ERR_STALE_STATUS_LIST == 104, "stable code");
_Static_assert(STAGEPASS_ERR_INVALID_CONFIGURATION == 105, "added after 104, never renumbered");
