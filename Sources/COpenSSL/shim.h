// Only libcrypto's digest API is used (SHA-256); the header keeps it in one place.
#ifndef IMGFS_COPENSSL_SHIM_H
#define IMGFS_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/sha.h>
#endif
