// CQRencode: libqrencode (Debian libqrencode-dev), the QR Code encoder. Nothing to wrap: its API is plain functions.
#ifndef STAGEPASS_CQRENCODE_SHIM_H
#define STAGEPASS_CQRENCODE_SHIM_H
#include <qrencode.h>
#endif
