// CJansson: jansson 2.14, plus static inline wrappers for its function-like macros (json_is_*, json_typeof,
// json_decref) which Swift does not import. Prefix: CJansson_.
#ifndef STAGEPASS_CJANSSON_SHIM_H
#define STAGEPASS_CJANSSON_SHIM_H
#include <jansson.h>

static inline int CJansson_typeof(const json_t *j) { return (int)json_typeof(j); }
static inline void CJansson_decref(json_t *j) { json_decref(j); }
static inline json_t *CJansson_incref(json_t *j) { return json_incref(j); }
static inline int CJansson_is_integer(const json_t *j) { return json_is_integer(j); }
static inline int CJansson_is_real(const json_t *j) { return json_is_real(j); }
/// Iterate an object without the json_object_foreach macro.
static inline const char *CJansson_iter_key(void *it) { return json_object_iter_key(it); }
static inline size_t CJansson_iter_key_len(void *it) { return json_object_iter_key_len(it); }
#endif
