// CArgon2: the reference Argon2 library (libargon2). Nothing to wrap: its API is plain functions.
#ifndef STAGEPASS_CARGON2_SHIM_H
#define STAGEPASS_CARGON2_SHIM_H
#include <argon2.h>
#endif
