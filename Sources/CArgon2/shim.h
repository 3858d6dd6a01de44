// CArgon2: the reference Argon2 library (libargon2). Its API is plain functions; the one addition is for the threads
// that run it.
#ifndef STAGEPASS_CARGON2_SHIM_H
#define STAGEPASS_CARGON2_SHIM_H
#include <argon2.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

// Sets the calling thread's nice value (Linux keeps one per thread: setpriority(2) with the thread's id from
// gettid(2)). The hashing workers call it with 10 so that request threads win the cores while every worker hashes.
// Returns 0, or -1 with errno set. Raising the value needs no privilege.
static inline int stagepass_set_thread_nice(int value) {
    return setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), value);
}
#endif
