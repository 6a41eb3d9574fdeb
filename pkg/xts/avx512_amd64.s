#include "textflag.h"
#include "schedule_amd64.h"

// XTS with VAES and AVX-512: 32 blocks (a whole 512-byte sector) in flight,
// four per zmm register. The technique follows the Linux kernel's
// arch/x86/crypto/aes-xts-avx-x86_64.S: round keys stay in registers, and a
// register of four consecutive tweaks moves on by x^32 with byte shifts and
// one carry-less multiplication instead of 32 sequential doublings.
//
// Sectors go in batches of up to 32 (see FILLTWEAKS4): their tweaks are
// written to the 512-byte frame, encrypted together with the tweak key, then
// the sectors run; a single sector keeps its tweak in registers.
//
// Registers: AX schedule, SI src, DI dst, R8 sectors in the batch, R9 the
// sector's tweak, R10 sectors left, R11 rounds, R12 sector size, R13 bytes
// left in the sector, R14 next sector number, DX step, BX/CX counters;
// Z0-Z7 blocks, Z8-Z15 tweaks, Z16-Z29 round keys 1..14 of the right-aligned schedule
// (AES-128 uses Z20-Z29), Z30 the reduction polynomial, Z31 scratch. Round
// key 0 is read from memory, replicated to 64 bytes.

// Lane multipliers and the low-quadword mask for FILLTWEAKS4.
DATA lanes4<>+0(SB)/8, $0
DATA lanes4<>+8(SB)/8, $0
DATA lanes4<>+16(SB)/8, $1
DATA lanes4<>+24(SB)/8, $0
DATA lanes4<>+32(SB)/8, $2
DATA lanes4<>+40(SB)/8, $0
DATA lanes4<>+48(SB)/8, $3
DATA lanes4<>+56(SB)/8, $0
GLOBL lanes4<>(SB), RODATA|NOPTR, $64
DATA lowq<>+0(SB)/8, $-1
DATA lowq<>+8(SB)/8, $0
DATA lowq<>+16(SB)/8, $-1
DATA lowq<>+24(SB)/8, $0
DATA lowq<>+32(SB)/8, $-1
DATA lowq<>+40(SB)/8, $0
DATA lowq<>+48(SB)/8, $-1
DATA lowq<>+56(SB)/8, $0
GLOBL lowq<>(SB), RODATA|NOPTR, $64

// 0x87 in each 128-bit lane: x^128 = x^7 + x^2 + x + 1.
DATA gfpoly<>+0(SB)/8, $0x87
DATA gfpoly<>+8(SB)/8, $0
GLOBL gfpoly<>(SB), RODATA|NOPTR, $16

#define LOADKEYS(base) \
	VBROADCASTI32X4 base+16(AX), Z16; \
	VBROADCASTI32X4 base+32(AX), Z17; \
	VBROADCASTI32X4 base+48(AX), Z18; \
	VBROADCASTI32X4 base+64(AX), Z19; \
	VBROADCASTI32X4 base+80(AX), Z20; \
	VBROADCASTI32X4 base+96(AX), Z21; \
	VBROADCASTI32X4 base+112(AX), Z22; \
	VBROADCASTI32X4 base+128(AX), Z23; \
	VBROADCASTI32X4 base+144(AX), Z24; \
	VBROADCASTI32X4 base+160(AX), Z25; \
	VBROADCASTI32X4 base+176(AX), Z26; \
	VBROADCASTI32X4 base+192(AX), Z27; \
	VBROADCASTI32X4 base+208(AX), Z28; \
	VBROADCASTI32X4 base+224(AX), Z29

#define AES8Z(op, k) \
	op k, Z0, Z0; \
	op k, Z1, Z1; \
	op k, Z2, Z2; \
	op k, Z3, Z3; \
	op k, Z4, Z4; \
	op k, Z5, Z5; \
	op k, Z6, Z6; \
	op k, Z7, Z7

#define ROUNDS8Z(op, last, short) \
	CMPQ R11, $14; \
	JNE  short; \
	AES8Z(op, Z16); \
	AES8Z(op, Z17); \
	AES8Z(op, Z18); \
	AES8Z(op, Z19); \
short: \
	AES8Z(op, Z20); \
	AES8Z(op, Z21); \
	AES8Z(op, Z22); \
	AES8Z(op, Z23); \
	AES8Z(op, Z24); \
	AES8Z(op, Z25); \
	AES8Z(op, Z26); \
	AES8Z(op, Z27); \
	AES8Z(op, Z28); \
	AES8Z(last, Z29)

#define ROUNDS1Z(op, last, short) \
	CMPQ R11, $14; \
	JNE  short; \
	op Z16, Z0, Z0; \
	op Z17, Z0, Z0; \
	op Z18, Z0, Z0; \
	op Z19, Z0, Z0; \
short: \
	op Z20, Z0, Z0; \
	op Z21, Z0, Z0; \
	op Z22, Z0, Z0; \
	op Z23, Z0, Z0; \
	op Z24, Z0, Z0; \
	op Z25, Z0, Z0; \
	op Z26, Z0, Z0; \
	op Z27, Z0, Z0; \
	op Z28, Z0, Z0; \
	last Z29, Z0, Z0

// t = Z0 * x^(lane index + 4*j) per 128-bit lane, for the j-th tweak
// register of a sector (Z0 holds the sector's tweak in every lane). The
// bits shifted out of the low quadword move to the high one; those shifted
// out of the high quadword are reduced with one carry-less multiplication.
#define INITTW(t, j) \
	VPSLLVQ    tw512shl<>+(64*j)(SB), Z0, t; \
	VPSRLVQ    tw512shr<>+(64*j)(SB), Z0, Z1; \
	VPCLMULQDQ $0x01, Z30, Z1, Z2; \
	VPSLLDQ    $8, Z1, Z1; \
	VPTERNLOGQ $0x96, Z1, Z2, t

// t *= x^32 in each lane: shift each lane left by four bytes and fold the
// four bytes shifted out back in with the polynomial.
#define NEXT32(t) \
	VPSRLDQ    $12, t, Z31; \
	VPCLMULQDQ $0x00, Z30, Z31, Z31; \
	VPSLLDQ    $4, t, t; \
	VPXORQ     Z31, t, t

#define LOADZ(i, x, t, key0) \
	VMOVDQU64  (64*i)(SI), x; \
	VPTERNLOGQ $0x96, key0(AX), t, x

#define STOREZ(i, x, t) \
	VPXORQ    t, x, x; \
	VMOVDQU64 x, (64*i)(DI)

// FILLTWEAKS4(k) starts a batch of k = min(R10, 32) sectors: it writes
// their plaintext tweaks (R14, R14+DX, ... as 16-byte little-endian blocks)
// to the frame four at a time with 64-byte stores, which the 64-byte loads
// of the tweak encryption can take straight from the store buffer. R14
// moves past the batch. Clobbers BX, CX, Z1-Z4.
#define FILLTWEAKS4(k) \
	MOVQ    R10, k; \
	MOVQ    $32, CX; \
	CMPQ    k, CX; \
	CMOVQHI CX, k; \
	VPBROADCASTQ R14, Z1; \
	VPBROADCASTQ DX, Z2; \
	VPMULLQ    lanes4<>(SB), Z2, Z3; \
	VPADDQ     Z3, Z1, Z1; \
	VPANDQ     lowq<>(SB), Z1, Z1; \
	VPSLLQ     $2, Z2, Z4; \
	VPANDQ     lowq<>(SB), Z4, Z4; \
	MOVQ    k, CX; \
	LEAQ    0(SP), BX; \
fill4: \
	VMOVDQU64 Z1, (BX); \
	VPADDQ    Z4, Z1, Z1; \
	ADDQ      $64, BX; \
	SUBQ      $4, CX; \
	JG        fill4; \
	MOVQ    k, CX; \
	IMULQ   DX, CX; \
	ADDQ    CX, R14

#define XTS_AVX512(keys, key0, op, last) \
	MOVQ ks+0(FP), AX; \
	MOVQ dst+8(FP), DI; \
	MOVQ src+16(FP), SI; \
	MOVQ n+24(FP), R10; \
	MOVQ sectorSize+32(FP), R12; \
	MOVQ tweak+40(FP), R14; \
	MOVQ step+48(FP), DX; \
	MOVQ KS_ROUNDS(AX), R11; \
	VBROADCASTI32X4 gfpoly<>(SB), Z30; \
batch: \
	CMPQ R10, $1; \
	JEQ  single; \
	FILLTWEAKS4(R8); \
	LOADKEYS(KS_TWEAK); \
	LEAQ 0(SP), BX; \
	MOVQ R8, CX; \
tweak32: \
	CMPQ CX, $32; \
	JB   tweak4; \
	VMOVDQU64 0(BX), Z0; \
	VMOVDQU64 64(BX), Z1; \
	VMOVDQU64 128(BX), Z2; \
	VMOVDQU64 192(BX), Z3; \
	VMOVDQU64 256(BX), Z4; \
	VMOVDQU64 320(BX), Z5; \
	VMOVDQU64 384(BX), Z6; \
	VMOVDQU64 448(BX), Z7; \
	VPXORQ KS_TWEAK0(AX), Z0, Z0; \
	VPXORQ KS_TWEAK0(AX), Z1, Z1; \
	VPXORQ KS_TWEAK0(AX), Z2, Z2; \
	VPXORQ KS_TWEAK0(AX), Z3, Z3; \
	VPXORQ KS_TWEAK0(AX), Z4, Z4; \
	VPXORQ KS_TWEAK0(AX), Z5, Z5; \
	VPXORQ KS_TWEAK0(AX), Z6, Z6; \
	VPXORQ KS_TWEAK0(AX), Z7, Z7; \
	ROUNDS8Z(VAESENC, VAESENCLAST, tweak32short); \
	VMOVDQU64 Z0, 0(BX); \
	VMOVDQU64 Z1, 64(BX); \
	VMOVDQU64 Z2, 128(BX); \
	VMOVDQU64 Z3, 192(BX); \
	VMOVDQU64 Z4, 256(BX); \
	VMOVDQU64 Z5, 320(BX); \
	VMOVDQU64 Z6, 384(BX); \
	VMOVDQU64 Z7, 448(BX); \
	ADDQ $512, BX; \
	SUBQ $32, CX; \
	JMP  tweak32; \
tweak4: \
	CMPQ CX, $0; \
	JLE  tweaksdone; \
	VMOVDQU64 (BX), Z0; \
	VPXORQ KS_TWEAK0(AX), Z0, Z0; \
	ROUNDS1Z(VAESENC, VAESENCLAST, tweak4short); \
	VMOVDQU64 Z0, (BX); \
	ADDQ $64, BX; \
	SUBQ $4, CX; \
	JMP  tweak4; \
tweaksdone: \
	LOADKEYS(keys); \
	LEAQ 0(SP), R9; \
	MOVQ R8, CX; \
sector: \
	VBROADCASTI32X4 (R9), Z0; \
sectorz0: \
	INITTW(Z8, 0); \
	INITTW(Z9, 1); \
	INITTW(Z10, 2); \
	INITTW(Z11, 3); \
	INITTW(Z12, 4); \
	INITTW(Z13, 5); \
	INITTW(Z14, 6); \
	INITTW(Z15, 7); \
	MOVQ R12, R13; \
blocks: \
	LOADZ(0, Z0, Z8, key0); \
	LOADZ(1, Z1, Z9, key0); \
	LOADZ(2, Z2, Z10, key0); \
	LOADZ(3, Z3, Z11, key0); \
	LOADZ(4, Z4, Z12, key0); \
	LOADZ(5, Z5, Z13, key0); \
	LOADZ(6, Z6, Z14, key0); \
	LOADZ(7, Z7, Z15, key0); \
	ROUNDS8Z(op, last, datashort); \
	STOREZ(0, Z0, Z8); \
	STOREZ(1, Z1, Z9); \
	STOREZ(2, Z2, Z10); \
	STOREZ(3, Z3, Z11); \
	STOREZ(4, Z4, Z12); \
	STOREZ(5, Z5, Z13); \
	STOREZ(6, Z6, Z14); \
	STOREZ(7, Z7, Z15); \
	ADDQ $512, SI; \
	ADDQ $512, DI; \
	SUBQ $512, R13; \
	JZ   sectordone; \
	NEXT32(Z8); \
	NEXT32(Z9); \
	NEXT32(Z10); \
	NEXT32(Z11); \
	NEXT32(Z12); \
	NEXT32(Z13); \
	NEXT32(Z14); \
	NEXT32(Z15); \
	JMP  blocks; \
sectordone: \
	ADDQ $16, R9; \
	DECQ CX; \
	JNZ  sector; \
	SUBQ R8, R10; \
	JNZ  batch; \
	JMP  done; \
single: \
	LOADKEYS(KS_TWEAK); \
	VMOVQ      R14, X0; \
	VPXORQ     KS_TWEAK0(AX), Z0, Z0; \
	ROUNDS1Z(VAESENC, VAESENCLAST, singleshort); \
	VSHUFI64X2 $0, Z0, Z0, Z0; \
	LOADKEYS(keys); \
	MOVQ $1, R8; \
	MOVQ $1, CX; \
	JMP  sectorz0; \
done: \
	VZEROALL; \
	VMOVDQU64 Z0, 0(SP); \
	VMOVDQU64 Z0, 64(SP); \
	VMOVDQU64 Z0, 128(SP); \
	VMOVDQU64 Z0, 192(SP); \
	VMOVDQU64 Z0, 256(SP); \
	VMOVDQU64 Z0, 320(SP); \
	VMOVDQU64 Z0, 384(SP); \
	VMOVDQU64 Z0, 448(SP); \
	VPXORQ Z16, Z16, Z16; \
	VPXORQ Z17, Z17, Z17; \
	VPXORQ Z18, Z18, Z18; \
	VPXORQ Z19, Z19, Z19; \
	VPXORQ Z20, Z20, Z20; \
	VPXORQ Z21, Z21, Z21; \
	VPXORQ Z22, Z22, Z22; \
	VPXORQ Z23, Z23, Z23; \
	VPXORQ Z24, Z24, Z24; \
	VPXORQ Z25, Z25, Z25; \
	VPXORQ Z26, Z26, Z26; \
	VPXORQ Z27, Z27, Z27; \
	VPXORQ Z28, Z28, Z28; \
	VPXORQ Z29, Z29, Z29; \
	VPXORQ Z31, Z31, Z31; \
	RET

// func encryptAVX512(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·encryptAVX512(SB), 0, $512-56
	XTS_AVX512(KS_ENC, KS_ENC0, VAESENC, VAESENCLAST)

// func decryptAVX512(ks *schedule, dst, src *byte, n, sectorSize int, tweak, step uint64)
TEXT ·decryptAVX512(SB), 0, $512-56
	XTS_AVX512(KS_DEC, KS_DEC0, VAESDEC, VAESDECLAST)

DATA tw512shl<>+0(SB)/8, $0
DATA tw512shl<>+8(SB)/8, $0
DATA tw512shl<>+16(SB)/8, $1
DATA tw512shl<>+24(SB)/8, $1
DATA tw512shl<>+32(SB)/8, $2
DATA tw512shl<>+40(SB)/8, $2
DATA tw512shl<>+48(SB)/8, $3
DATA tw512shl<>+56(SB)/8, $3
DATA tw512shl<>+64(SB)/8, $4
DATA tw512shl<>+72(SB)/8, $4
DATA tw512shl<>+80(SB)/8, $5
DATA tw512shl<>+88(SB)/8, $5
DATA tw512shl<>+96(SB)/8, $6
DATA tw512shl<>+104(SB)/8, $6
DATA tw512shl<>+112(SB)/8, $7
DATA tw512shl<>+120(SB)/8, $7
DATA tw512shl<>+128(SB)/8, $8
DATA tw512shl<>+136(SB)/8, $8
DATA tw512shl<>+144(SB)/8, $9
DATA tw512shl<>+152(SB)/8, $9
DATA tw512shl<>+160(SB)/8, $10
DATA tw512shl<>+168(SB)/8, $10
DATA tw512shl<>+176(SB)/8, $11
DATA tw512shl<>+184(SB)/8, $11
DATA tw512shl<>+192(SB)/8, $12
DATA tw512shl<>+200(SB)/8, $12
DATA tw512shl<>+208(SB)/8, $13
DATA tw512shl<>+216(SB)/8, $13
DATA tw512shl<>+224(SB)/8, $14
DATA tw512shl<>+232(SB)/8, $14
DATA tw512shl<>+240(SB)/8, $15
DATA tw512shl<>+248(SB)/8, $15
DATA tw512shl<>+256(SB)/8, $16
DATA tw512shl<>+264(SB)/8, $16
DATA tw512shl<>+272(SB)/8, $17
DATA tw512shl<>+280(SB)/8, $17
DATA tw512shl<>+288(SB)/8, $18
DATA tw512shl<>+296(SB)/8, $18
DATA tw512shl<>+304(SB)/8, $19
DATA tw512shl<>+312(SB)/8, $19
DATA tw512shl<>+320(SB)/8, $20
DATA tw512shl<>+328(SB)/8, $20
DATA tw512shl<>+336(SB)/8, $21
DATA tw512shl<>+344(SB)/8, $21
DATA tw512shl<>+352(SB)/8, $22
DATA tw512shl<>+360(SB)/8, $22
DATA tw512shl<>+368(SB)/8, $23
DATA tw512shl<>+376(SB)/8, $23
DATA tw512shl<>+384(SB)/8, $24
DATA tw512shl<>+392(SB)/8, $24
DATA tw512shl<>+400(SB)/8, $25
DATA tw512shl<>+408(SB)/8, $25
DATA tw512shl<>+416(SB)/8, $26
DATA tw512shl<>+424(SB)/8, $26
DATA tw512shl<>+432(SB)/8, $27
DATA tw512shl<>+440(SB)/8, $27
DATA tw512shl<>+448(SB)/8, $28
DATA tw512shl<>+456(SB)/8, $28
DATA tw512shl<>+464(SB)/8, $29
DATA tw512shl<>+472(SB)/8, $29
DATA tw512shl<>+480(SB)/8, $30
DATA tw512shl<>+488(SB)/8, $30
DATA tw512shl<>+496(SB)/8, $31
DATA tw512shl<>+504(SB)/8, $31
GLOBL tw512shl<>(SB), RODATA|NOPTR, $512

DATA tw512shr<>+0(SB)/8, $64
DATA tw512shr<>+8(SB)/8, $64
DATA tw512shr<>+16(SB)/8, $63
DATA tw512shr<>+24(SB)/8, $63
DATA tw512shr<>+32(SB)/8, $62
DATA tw512shr<>+40(SB)/8, $62
DATA tw512shr<>+48(SB)/8, $61
DATA tw512shr<>+56(SB)/8, $61
DATA tw512shr<>+64(SB)/8, $60
DATA tw512shr<>+72(SB)/8, $60
DATA tw512shr<>+80(SB)/8, $59
DATA tw512shr<>+88(SB)/8, $59
DATA tw512shr<>+96(SB)/8, $58
DATA tw512shr<>+104(SB)/8, $58
DATA tw512shr<>+112(SB)/8, $57
DATA tw512shr<>+120(SB)/8, $57
DATA tw512shr<>+128(SB)/8, $56
DATA tw512shr<>+136(SB)/8, $56
DATA tw512shr<>+144(SB)/8, $55
DATA tw512shr<>+152(SB)/8, $55
DATA tw512shr<>+160(SB)/8, $54
DATA tw512shr<>+168(SB)/8, $54
DATA tw512shr<>+176(SB)/8, $53
DATA tw512shr<>+184(SB)/8, $53
DATA tw512shr<>+192(SB)/8, $52
DATA tw512shr<>+200(SB)/8, $52
DATA tw512shr<>+208(SB)/8, $51
DATA tw512shr<>+216(SB)/8, $51
DATA tw512shr<>+224(SB)/8, $50
DATA tw512shr<>+232(SB)/8, $50
DATA tw512shr<>+240(SB)/8, $49
DATA tw512shr<>+248(SB)/8, $49
DATA tw512shr<>+256(SB)/8, $48
DATA tw512shr<>+264(SB)/8, $48
DATA tw512shr<>+272(SB)/8, $47
DATA tw512shr<>+280(SB)/8, $47
DATA tw512shr<>+288(SB)/8, $46
DATA tw512shr<>+296(SB)/8, $46
DATA tw512shr<>+304(SB)/8, $45
DATA tw512shr<>+312(SB)/8, $45
DATA tw512shr<>+320(SB)/8, $44
DATA tw512shr<>+328(SB)/8, $44
DATA tw512shr<>+336(SB)/8, $43
DATA tw512shr<>+344(SB)/8, $43
DATA tw512shr<>+352(SB)/8, $42
DATA tw512shr<>+360(SB)/8, $42
DATA tw512shr<>+368(SB)/8, $41
DATA tw512shr<>+376(SB)/8, $41
DATA tw512shr<>+384(SB)/8, $40
DATA tw512shr<>+392(SB)/8, $40
DATA tw512shr<>+400(SB)/8, $39
DATA tw512shr<>+408(SB)/8, $39
DATA tw512shr<>+416(SB)/8, $38
DATA tw512shr<>+424(SB)/8, $38
DATA tw512shr<>+432(SB)/8, $37
DATA tw512shr<>+440(SB)/8, $37
DATA tw512shr<>+448(SB)/8, $36
DATA tw512shr<>+456(SB)/8, $36
DATA tw512shr<>+464(SB)/8, $35
DATA tw512shr<>+472(SB)/8, $35
DATA tw512shr<>+480(SB)/8, $34
DATA tw512shr<>+488(SB)/8, $34
DATA tw512shr<>+496(SB)/8, $33
DATA tw512shr<>+504(SB)/8, $33
GLOBL tw512shr<>(SB), RODATA|NOPTR, $512
