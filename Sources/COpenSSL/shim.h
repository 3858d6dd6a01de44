// COpenSSL: the OpenSSL 3 libcrypto headers Stagepass uses, plus static inline wrappers for the
// function-like macros Swift cannot import. Prefix: COpenSSL_. Delete a wrapper when Swift imports the macro.
#ifndef STAGEPASS_COPENSSL_SHIM_H
#define STAGEPASS_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/ec.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>
#include <openssl/pem.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/x509.h>
#include <openssl/kdf.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>

/// BIO_get_mem_data is a macro over BIO_ctrl.
static inline long COpenSSL_BIO_get_mem_data(BIO *bio, char **out) { return BIO_get_mem_data(bio, out); }
/// EVP_PKEY_CTX_set_rsa_padding etc. are functions in 3.0, but OPENSSL_free is a macro.
static inline void COpenSSL_free(void *p) { OPENSSL_free(p); }
/// BN_num_bytes is a macro.
static inline int COpenSSL_BN_num_bytes(const BIGNUM *bn) { return BN_num_bytes(bn); }
#endif
