/* The shipped C header of libStagepassVerifyC, as a module the Swift tests import: they call the C ABI through the
 * declarations a C program compiles against. */
#include "../../../Sources/StagepassVerifyC/include/stagepass_verify.h"
