#include "textflag.h"
#include "schedule_amd64.h"

// XTS with VAES on ymm registers (AVX2, no AVX-512): eight blocks in flight,
// two per register, tweaks moved on by x^8 with byte shifts and one
// carry-less multiplication per register.
//
// Sectors go in batches of up to 32 (see FILLTWEAKS2), tweaks in the frame;
// a single sector keeps its tweak in registers.
//
// Registers: AX schedule, SI src, DI dst, R9 the sector's tweak, R10
// sectors left, R11 sectors in the batch, R8 16*(14-rounds), R12 sector
// size, R13 bytes left in the sector, R14 next sector number, DX step; Y0-Y3 blocks, Y4-Y7 tweaks, Y8 round key, Y9 the reduction
// polynomial, Y10-Y12 scratch, Y13 round key 0.

DATA gfpoly2<>+0(SB)/8, $0x87
DATA gfpoly2<>+8(SB)/8, $0
GLOBL gfpoly2<>(SB), RODATA|NOPTR, $16

#define AES4Y(op) \
	op Y8, Y0, Y0; \
	op Y8, Y1, Y1; \
	op Y8, Y2, Y2; \
	op Y8, Y3, Y3

#define ROUNDS4Y(op, last, base, short) \
	CMPQ KS_ROUNDS(AX), $14; \
	JNE  short; \
	VBROADCASTI128 base+16(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+32(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+48(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+64(AX), Y8; AES4Y(op); \
short: \
	VBROADCASTI128 base+80(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+96(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+112(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+128(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+144(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+160(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+176(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+192(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+208(AX), Y8; AES4Y(op); \
	VBROADCASTI128 base+224(AX), Y8; AES4Y(last)

#define ROUNDS1Y(op, last, base, short) \
	CMPQ KS_ROUNDS(AX), $14; \
	JNE  short; \
	VBROADCASTI128 base+16(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+32(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+48(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+64(AX), Y8; op Y8, Y0, Y0; \
short: \
	VBROADCASTI128 base+80(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+96(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+112(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+128(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+144(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+160(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+176(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+192(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+208(AX), Y8; op Y8, Y0, Y0; \
	VBROADCASTI128 base+224(AX), Y8; last Y8, Y0, Y0

// t = Y10 * x^(lane index + 2*j) per lane (see INITTW in avx512_amd64.s).
#define INITTW2(t, j) \
	VPSLLVQ    tw256shl<>+(32*j)(SB), Y10, t; \
	VPSRLVQ    tw256shr<>+(32*j)(SB), Y10, Y11; \
	VPCLMULQDQ $0x01, Y9, Y11, Y12; \
	VPSLLDQ    $8, Y11, Y11; \
	VPXOR      Y11, t, t; \
	VPXOR      Y12, t, t

// t *= x^8 in each lane.
#define NEXT8(t) \
	VPSRLDQ    $15, t, Y11; \
	VPCLMULQDQ $0x00, Y9, Y11, Y11; \
	VPSLLDQ    $1, t, t; \
	VPXOR      Y11, t, t

#define LOADY(i, y, t) \
	VMOVDQU (32*i)(SI), y; \
	VPXOR   t, y, y; \
	VPXOR   Y13, y, y

#define STOREY(i, y, t) \
	VPXOR   t, y, y; \
	VMOVDQU y, (32*i)(DI)

// Wipe the 512-byte tweak buffer at off(SP) with the zero register z.
#define WIPETWEAKS(z, off) \
	VMOVDQU z, (off+0)(SP); \
	VMOVDQU z, (off+32)(SP); \
	VMOVDQU z, (off+64)(SP); \
	VMOVDQU z, (off+96)(SP); \
	VMOVDQU z, (off+128)(SP); \
	VMOVDQU z, (off+160)(SP); \
	VMOVDQU z, (off+192)(SP); \
	VMOVDQU z, (off+224)(SP); \
	VMOVDQU z, (off+256)(SP); \
	VMOVDQU z, (off+288)(SP); \
	VMOVDQU z, (off+320)(SP); \
	VMOVDQU z, (off+352)(SP); \
	VMOVDQU z, (off+384)(SP); \
	VMOVDQU z, (off+416)(SP); \
	VMOVDQU z, (off+448)(SP); \
	VMOVDQU z, (off+480)(SP)

// FILLTWEAKS2(k) starts a batch of k = min(R10, 32) sectors: it writes
// their plaintext tweaks (R14, R14+DX, ... as 16-byte little-endian blocks)
// to the frame two at a time with 32-byte stores, which the 32-byte loads
// of the tweak encryption can take straight from the store buffer. R14
// moves past the batch. Clobbers BX, CX, Y1, Y2.
#define FILLTWEAKS2(k) \
	MOVQ    R10, k; \
	MOVQ    $32, CX; \
	CMPQ    k, CX; \
	CMOVQHI CX, k; \
	MOVQ    k, CX; \
	LEAQ    0(SP), BX; \
fill2: \
	VMOVQ      R14, X1; \
	ADDQ       DX, R14; \
	VMOVQ      R14, X2; \
	ADDQ       DX, R14; \
	VINSERTI128 $1, X2, Y1, Y1; \
	VMOVDQU    Y1, (BX); \
	ADDQ       $32, BX; \
	SUBQ       $2, CX; \
	JG         fill2; \
	MOVQ    k, CX; \
	ANDQ    $1, CX; \
	JZ      fill2done; \
	SUBQ    DX, R14; \
fill2done:

#define XTS_AVX2(keys, op, last) \
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
	VBROADCASTI128 gfpoly2<>(SB), Y9; \
batch: \
	VBROADCASTI128 KS_TWEAK(AX)(R8*1), Y13; \
	CMPQ R10, $1; \
	JEQ  single; \
	FILLTWEAKS2(R11); \
	LEAQ 0(SP), BX; \
	MOVQ R11, CX; \
tweak8: \
	CMPQ CX, $8; \
	JB   tweak2; \
	VMOVDQU 0(BX), Y0; \
	VMOVDQU 32(BX), Y1; \
	VMOVDQU 64(BX), Y2; \
	VMOVDQU 96(BX), Y3; \
	VPXOR Y13, Y0, Y0; \
	VPXOR Y13, Y1, Y1; \
	VPXOR Y13, Y2, Y2; \
	VPXOR Y13, Y3, Y3; \
	ROUNDS4Y(VAESENC, VAESENCLAST, KS_TWEAK, tweak8short); \
	VMOVDQU Y0, 0(BX); \
	VMOVDQU Y1, 32(BX); \
	VMOVDQU Y2, 64(BX); \
	VMOVDQU Y3, 96(BX); \
	ADDQ $128, BX; \
	SUBQ $8, CX; \
	JMP  tweak8; \
tweak2: \
	CMPQ CX, $0; \
	JLE  tweaksdone; \
	VMOVDQU (BX), Y0; \
	VPXOR Y13, Y0, Y0; \
	ROUNDS1Y(VAESENC, VAESENCLAST, KS_TWEAK, tweak2short); \
	VMOVDQU Y0, (BX); \
	ADDQ $32, BX; \
	SUBQ $2, CX; \
	JMP  tweak2; \
tweaksdone: \
	VBROADCASTI128 keys(AX)(R8*1), Y13; \
	LEAQ 0(SP), R9; \
	MOVQ R11, CX; \
sector: \
	VBROADCASTI128 (R9), Y10; \
sectory10: \
	INITTW2(Y4, 0); \
	INITTW2(Y5, 1); \
	INITTW2(Y6, 2); \
	INITTW2(Y7, 3); \
	MOVQ R12, R13; \
blocks: \
	LOADY(0, Y0, Y4); \
	LOADY(1, Y1, Y5); \
	LOADY(2, Y2, Y6); \
	LOADY(3, Y3, Y7); \
	ROUNDS4Y(op, last, keys, datashort); \
	STOREY(0, Y0, Y4); \
	STOREY(1, Y1, Y5); \
	STOREY(2, Y2, Y6); \
	STOREY(3, Y3, Y7); \
	NEXT8(Y4); \
	NEXT8(Y5); \
	NEXT8(Y6); \
	NEXT8(Y7); \
	ADDQ $128, SI; \
	ADDQ $128, DI; \
	SUBQ $128, R13; \
	JNZ  blocks; \
	ADDQ $16, R9; \
	DECQ CX; \
	JNZ  sector; \
	SUBQ R11, R10; \
	JNZ  batch; \
	JMP  done; \
single: \
	VMOVQ  R14, X0; \
	VPXOR  Y13, Y0, Y0; \
	ROUNDS1Y(VAESENC, VAESENCLAST, KS_TWEAK, singleshort); \
	VPERMQ $0x44, Y0, Y10; \
	VBROADCASTI128 keys(AX)(R8*1), Y13; \
	MOVQ   $1, R11; \
	MOVQ   $1, CX; \
	JMP    sectory10; \
done: \
	VZEROALL; \
	WIPETWEAKS(Y0, 0); \
	RET

// func encryptAVX2(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·encryptAVX2(SB), 0, $512-56
	XTS_AVX2(KS_ENC, VAESENC, VAESENCLAST)

// func decryptAVX2(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·decryptAVX2(SB), 0, $512-56
	XTS_AVX2(KS_DEC, VAESDEC, VAESDECLAST)

DATA tw256shl<>+0(SB)/8, $0
DATA tw256shl<>+8(SB)/8, $0
DATA tw256shl<>+16(SB)/8, $1
DATA tw256shl<>+24(SB)/8, $1
DATA tw256shl<>+32(SB)/8, $2
DATA tw256shl<>+40(SB)/8, $2
DATA tw256shl<>+48(SB)/8, $3
DATA tw256shl<>+56(SB)/8, $3
DATA tw256shl<>+64(SB)/8, $4
DATA tw256shl<>+72(SB)/8, $4
DATA tw256shl<>+80(SB)/8, $5
DATA tw256shl<>+88(SB)/8, $5
DATA tw256shl<>+96(SB)/8, $6
DATA tw256shl<>+104(SB)/8, $6
DATA tw256shl<>+112(SB)/8, $7
DATA tw256shl<>+120(SB)/8, $7
GLOBL tw256shl<>(SB), RODATA|NOPTR, $128

DATA tw256shr<>+0(SB)/8, $64
DATA tw256shr<>+8(SB)/8, $64
DATA tw256shr<>+16(SB)/8, $63
DATA tw256shr<>+24(SB)/8, $63
DATA tw256shr<>+32(SB)/8, $62
DATA tw256shr<>+40(SB)/8, $62
DATA tw256shr<>+48(SB)/8, $61
DATA tw256shr<>+56(SB)/8, $61
DATA tw256shr<>+64(SB)/8, $60
DATA tw256shr<>+72(SB)/8, $60
DATA tw256shr<>+80(SB)/8, $59
DATA tw256shr<>+88(SB)/8, $59
DATA tw256shr<>+96(SB)/8, $58
DATA tw256shr<>+104(SB)/8, $58
DATA tw256shr<>+112(SB)/8, $57
DATA tw256shr<>+120(SB)/8, $57
GLOBL tw256shr<>(SB), RODATA|NOPTR, $128
