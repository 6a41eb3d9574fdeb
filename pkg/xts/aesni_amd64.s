#include "textflag.h"
#include "schedule_amd64.h"
#include "batch_amd64.h"

// XTS with AES-NI on xmm registers, eight blocks in flight. Needs only
// SSE2 and AES-NI.
//
// Sectors go in batches of up to 32 (see FILLTWEAKS), tweaks in the frame
// at 128(SP).
//
// Registers: AX schedule, SI src, DI dst, R9 the sector's tweak, R10
// sectors left, R11 sectors in the batch, R8 16*(14-rounds) (offset of
// round key 0), R12 sector size, R13 bytes left in the sector, R14 next
// sector number, DX step; X0-X7 blocks, X8 round key, X9 running
// tweak, X10-X11 scratch, X12 the reduction mask. The eight tweaks of an
// iteration wait at 0(SP).

// {0x87, 1}: the feedback of x^128 and the carry from the low quadword.
DATA gfmask<>+0(SB)/8, $0x87
DATA gfmask<>+8(SB)/8, $1
GLOBL gfmask<>(SB), RODATA|NOPTR, $16

// t *= x in GF(2^128), XTS (little-endian) bit order.
#define MULX(t) \
	PSHUFD $0x13, t, X11; \
	PSRAL  $31, X11; \
	PAND   X12, X11; \
	PADDQ  t, t; \
	PXOR   X11, t

#define AES8(op) \
	op X8, X0; \
	op X8, X1; \
	op X8, X2; \
	op X8, X3; \
	op X8, X4; \
	op X8, X5; \
	op X8, X6; \
	op X8, X7

// All rounds after the first key addition. Round keys are right-aligned,
// so AES-128 starts at slot 5 and both end at slot 14.
#define ROUNDS8(op, last, base, short) \
	CMPQ  KS_ROUNDS(AX), $14; \
	JNE   short; \
	MOVOU base+16(AX), X8; AES8(op); \
	MOVOU base+32(AX), X8; AES8(op); \
	MOVOU base+48(AX), X8; AES8(op); \
	MOVOU base+64(AX), X8; AES8(op); \
short: \
	MOVOU base+80(AX), X8; AES8(op); \
	MOVOU base+96(AX), X8; AES8(op); \
	MOVOU base+112(AX), X8; AES8(op); \
	MOVOU base+128(AX), X8; AES8(op); \
	MOVOU base+144(AX), X8; AES8(op); \
	MOVOU base+160(AX), X8; AES8(op); \
	MOVOU base+176(AX), X8; AES8(op); \
	MOVOU base+192(AX), X8; AES8(op); \
	MOVOU base+208(AX), X8; AES8(op); \
	MOVOU base+224(AX), X8; AES8(last)

#define ROUNDS1(op, last, base, short) \
	CMPQ  KS_ROUNDS(AX), $14; \
	JNE   short; \
	MOVOU base+16(AX), X8; op X8, X0; \
	MOVOU base+32(AX), X8; op X8, X0; \
	MOVOU base+48(AX), X8; op X8, X0; \
	MOVOU base+64(AX), X8; op X8, X0; \
short: \
	MOVOU base+80(AX), X8; op X8, X0; \
	MOVOU base+96(AX), X8; op X8, X0; \
	MOVOU base+112(AX), X8; op X8, X0; \
	MOVOU base+128(AX), X8; op X8, X0; \
	MOVOU base+144(AX), X8; op X8, X0; \
	MOVOU base+160(AX), X8; op X8, X0; \
	MOVOU base+176(AX), X8; op X8, X0; \
	MOVOU base+192(AX), X8; op X8, X0; \
	MOVOU base+208(AX), X8; op X8, X0; \
	MOVOU base+224(AX), X8; last X8, X0

#define LOADX(i, x) \
	MOVOU X9, (16*i)(SP); \
	MOVOU (16*i)(SI), x; \
	PXOR  X9, x; \
	MULX(X9)

#define STOREX(i, x) \
	MOVOU (16*i)(SP), X10; \
	PXOR  X10, x; \
	MOVOU x, (16*i)(DI)

// The body of encryptAESNI and decryptAESNI: first the tweaks are
// encrypted in place with the tweak key, then each sector is processed
// with its tweak. keys is KS_ENC or KS_DEC.
#define XTS_AESNI(keys, op, last) \
	MOVQ ks+0(FP), AX; \
	MOVQ dst+8(FP), DI; \
	MOVQ src+16(FP), SI; \
	MOVQ n+24(FP), R10; \
	MOVQ sectorSize+32(FP), R12; \
	MOVQ tweak+40(FP), R14; \
	MOVQ step+48(FP), DX; \
	MOVQ $14, R8; \
	SUBQ KS_ROUNDS(AX), R8; \
	SHLQ $4, R8; \
	MOVOU gfmask<>(SB), X12; \
batch: \
	FILLTWEAKS(R11, 128); \
	LEAQ 128(SP), BX; \
	MOVQ R11, CX; \
tweak1: \
	MOVOU (BX), X0; \
	MOVOU KS_TWEAK(AX)(R8*1), X8; \
	PXOR  X8, X0; \
	ROUNDS1(AESENC, AESENCLAST, KS_TWEAK, tweakshort); \
	MOVOU X0, (BX); \
	ADDQ  $16, BX; \
	DECQ  CX; \
	JNZ   tweak1; \
	LEAQ 128(SP), R9; \
	MOVQ R11, CX; \
sector: \
	MOVOU (R9), X9; \
	MOVQ  R12, R13; \
blocks: \
	LOADX(0, X0); \
	LOADX(1, X1); \
	LOADX(2, X2); \
	LOADX(3, X3); \
	LOADX(4, X4); \
	LOADX(5, X5); \
	LOADX(6, X6); \
	LOADX(7, X7); \
	MOVOU keys(AX)(R8*1), X8; \
	AES8(PXOR); \
	ROUNDS8(op, last, keys, datashort); \
	STOREX(0, X0); \
	STOREX(1, X1); \
	STOREX(2, X2); \
	STOREX(3, X3); \
	STOREX(4, X4); \
	STOREX(5, X5); \
	STOREX(6, X6); \
	STOREX(7, X7); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $128, R13; \
	JNZ  blocks; \
	ADDQ $16, R9; \
	DECQ CX; \
	JNZ  sector; \
	SUBQ R11, R10; \
	JNZ  batch; \
	PXOR X0, X0; \
	PXOR X1, X1; \
	PXOR X2, X2; \
	PXOR X3, X3; \
	PXOR X4, X4; \
	PXOR X5, X5; \
	PXOR X6, X6; \
	PXOR X7, X7; \
	PXOR X8, X8; \
	PXOR X9, X9; \
	PXOR X10, X10; \
	LEAQ 0(SP), BX; \
	MOVQ $40, CX; \
wipe: \
	MOVOU X0, (BX); \
	ADDQ  $16, BX; \
	DECQ  CX; \
	JNZ   wipe; \
	RET

// func encryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·encryptAESNI(SB), 0, $640-56
	XTS_AESNI(KS_ENC, AESENC, AESENCLAST)

// func decryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·decryptAESNI(SB), 0, $640-56
	XTS_AESNI(KS_DEC, AESDEC, AESDECLAST)
