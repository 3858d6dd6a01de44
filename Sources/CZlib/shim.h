// CZlib: zlib, for the Token Status List's compressed bit array (draft-ietf-oauth-status-list §4.1 uses
// the ZLIB format of RFC 1950 with DEFLATE, RFC 1951). Nothing to wrap.
#ifndef STAGEPASS_CZLIB_SHIM_H
#define STAGEPASS_CZLIB_SHIM_H
#include <zlib.h>
#endif
