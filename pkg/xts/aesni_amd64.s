#include "textflag.h"
#include "schedule_amd64.h"

// XTS with AES-NI on xmm registers, eight blocks in flight. Needs only
// SSE2, AES-NI and PCLMULQDQ.
//
// Sectors go in batches of up to 32 (see FILLTWEAKS), tweaks in the frame;
// a single sector keeps its tweak in registers.
//
// Registers: AX schedule, BX the data schedule, SI src, DI dst, R9 the
// sector's tweak, R10 sectors left, R11 sectors in the batch, R8
// 16*(14-rounds) (offset of round key 0), R12 sector size, R13 bytes left
// in the sector, R14 next sector number, DX step; X0-X7 blocks, X8-X15
// their tweaks. Round keys are memory operands: the schedule is
// page-aligned, as legacy SSE memory operands must be.

// {0x87, 1}: the feedback of x^128 and the carry from the low quadword.
DATA gfmask<>+0(SB)/8, $0x87
DATA gfmask<>+8(SB)/8, $1
GLOBL gfmask<>(SB), RODATA|NOPTR, $16

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

// dst = src * x, with X0 as scratch and the mask in X1.
#define MULX2(src, dst) \
	PSHUFD $0x13, src, X0; \
	PSRAL  $31, X0; \
	PAND   X1, X0; \
	MOVOU  src, dst; \
	PADDQ  dst, dst; \
	PXOR   X0, dst

// t *= x^8: shift left by a byte and fold the byte shifted out back in
// with one carry-less multiplication by 0x87 (the low quadword of X1).
#define NEXT8X(t) \
	MOVOU     t, X0; \
	PSRLO     $15, X0; \
	PCLMULQDQ $0x00, X1, X0; \
	PSLLO     $1, t; \
	PXOR      X0, t

// One round on all eight blocks, the round key at off(AX).
#define AESM(op, off) \
	op off(AX), X0; \
	op off(AX), X1; \
	op off(AX), X2; \
	op off(AX), X3; \
	op off(AX), X4; \
	op off(AX), X5; \
	op off(AX), X6; \
	op off(AX), X7

#define ROUNDS8M(op, last, base, short) \
	CMPQ KS_ROUNDS(AX), $14; \
	JNE  short; \
	AESM(op, base+16); \
	AESM(op, base+32); \
	AESM(op, base+48); \
	AESM(op, base+64); \
short: \
	AESM(op, base+80); \
	AESM(op, base+96); \
	AESM(op, base+112); \
	AESM(op, base+128); \
	AESM(op, base+144); \
	AESM(op, base+160); \
	AESM(op, base+176); \
	AESM(op, base+192); \
	AESM(op, base+208); \
	AESM(last, base+224)

#define LOADX(i, x, t) \
	MOVOU (16*i)(SI), x; \
	PXOR  t, x; \
	PXOR  0(BX)(R8*1), x

#define STOREX(i, x, t) \
	PXOR  t, x; \
	MOVOU x, (16*i)(DI)

// FILLTWEAKS(k, off) starts a batch: k = min(R10, 32) sectors, whose
// plaintext tweaks (R14, R14+DX, ... as 16-byte little-endian blocks) it
// writes to the frame at off(SP), each with one 16-byte store that the
// 16-byte loads of the tweak encryption can forward from. R14 moves past
// the batch. Clobbers BX, CX, X1.
#define FILLTWEAKS(k, off) \
	MOVQ    R10, k; \
	MOVQ    $32, CX; \
	CMPQ    k, CX; \
	CMOVQHI CX, k; \
	MOVQ    k, CX; \
	LEAQ    off(SP), BX; \
fill: \
	MOVQ  R14, X1; \
	MOVOU X1, 0(BX); \
	ADDQ  DX, R14; \
	ADDQ  $16, BX; \
	DECQ  CX; \
	JNZ   fill

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
batch: \
	CMPQ R10, $1; \
	JEQ  single; \
	FILLTWEAKS(R11, 0); \
	LEAQ 0(SP), BX; \
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
	LEAQ 0(SP), R9; \
	MOVQ R11, CX; \
	LEAQ keys(AX), BX; \
sector: \
	MOVOU (R9), X8; \
sectorx8: \
	MOVOU gfmask<>(SB), X1; \
	MULX2(X8, X9); \
	MULX2(X9, X10); \
	MULX2(X10, X11); \
	MULX2(X11, X12); \
	MULX2(X12, X13); \
	MULX2(X13, X14); \
	MULX2(X14, X15); \
	MOVQ  R12, R13; \
blocks: \
	LOADX(0, X0, X8); \
	LOADX(1, X1, X9); \
	LOADX(2, X2, X10); \
	LOADX(3, X3, X11); \
	LOADX(4, X4, X12); \
	LOADX(5, X5, X13); \
	LOADX(6, X6, X14); \
	LOADX(7, X7, X15); \
	ROUNDS8M(op, last, keys, datashort); \
	STOREX(0, X0, X8); \
	STOREX(1, X1, X9); \
	STOREX(2, X2, X10); \
	STOREX(3, X3, X11); \
	STOREX(4, X4, X12); \
	STOREX(5, X5, X13); \
	STOREX(6, X6, X14); \
	STOREX(7, X7, X15); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $128, R13; \
	JZ   sectordone; \
	MOVOU gfmask<>(SB), X1; \
	NEXT8X(X8); \
	NEXT8X(X9); \
	NEXT8X(X10); \
	NEXT8X(X11); \
	NEXT8X(X12); \
	NEXT8X(X13); \
	NEXT8X(X14); \
	NEXT8X(X15); \
	JMP  blocks; \
sectordone: \
	ADDQ $16, R9; \
	DECQ CX; \
	JNZ  sector; \
	SUBQ R11, R10; \
	JNZ  batch; \
	JMP  done; \
single: \
	MOVQ  R14, X0; \
	MOVOU KS_TWEAK(AX)(R8*1), X8; \
	PXOR  X8, X0; \
	ROUNDS1(AESENC, AESENCLAST, KS_TWEAK, singleshort); \
	MOVOU X0, X8; \
	MOVQ  $1, R11; \
	MOVQ  $1, CX; \
	LEAQ  keys(AX), BX; \
	JMP   sectorx8; \
done: \
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
	PXOR X11, X11; \
	PXOR X12, X12; \
	PXOR X13, X13; \
	PXOR X14, X14; \
	PXOR X15, X15; \
	MOVQ    n+24(FP), CX; \
	MOVQ    $32, BX; \
	CMPQ    CX, BX; \
	CMOVQHI BX, CX; \
	LEAQ    0(SP), BX; \
wipe: \
	MOVOU X0, (BX); \
	ADDQ  $16, BX; \
	DECQ  CX; \
	JNZ   wipe; \
	RET

// func encryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·encryptAESNI(SB), 0, $512-56
	XTS_AESNI(KS_ENC, AESENC, AESENCLAST)

// func decryptAESNI(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·decryptAESNI(SB), 0, $512-56
	XTS_AESNI(KS_DEC, AESDEC, AESDECLAST)
