#include "textflag.h"

// AES key expansion with AESKEYGENASSIST, and the equivalent inverse
// cipher's schedule with AESIMC (FIPS 197, section 5.3.5).

// r ^= r<<32 ^ r<<64 ^ r<<96: the running XOR of the previous round key's
// words. Clobbers X3.
#define PREFIXXOR(r) \
	MOVOU r, X3; \
	PSLLO $4, X3; \
	PXOR  X3, r; \
	PSLLO $4, X3; \
	PXOR  X3, r; \
	PSLLO $4, X3; \
	PXOR  X3, r

// AES-128: the next round key from the previous one in X0.
#define EXP128(rcon, off) \
	AESKEYGENASSIST rcon, X0, X1; \
	PSHUFD $0xff, X1, X1; \
	PREFIXXOR(X0); \
	PXOR  X1, X0; \
	MOVOU X0, off(BX)

// AES-256, even round key: X0 from X0 and RotWord(SubWord(X2[3])) ^ rcon.
#define EXP256A(rcon, off) \
	AESKEYGENASSIST rcon, X2, X1; \
	PSHUFD $0xff, X1, X1; \
	PREFIXXOR(X0); \
	PXOR  X1, X0; \
	MOVOU X0, off(BX)

// AES-256, odd round key: X2 from X2 and SubWord(X0[3]).
#define EXP256B(off) \
	AESKEYGENASSIST $0, X0, X1; \
	PSHUFD $0xaa, X1, X1; \
	PREFIXXOR(X2); \
	PXOR  X1, X2; \
	MOVOU X2, off(BX)

// func expandKeyAESNI(rounds int, key *byte, enc, dec *[15][16]byte)
//
// Writes the rounds+1 round keys right-aligned into enc (round key i at
// index 14-rounds+i) and, if dec is not nil, the decryption schedule the
// same way.
TEXT ·expandKeyAESNI(SB), NOSPLIT, $0-32
	MOVQ rounds+0(FP), CX
	MOVQ key+8(FP), AX
	MOVQ enc+16(FP), BX
	MOVQ dec+24(FP), DX
	MOVQ $14, R8
	SUBQ CX, R8
	SHLQ $4, R8
	ADDQ R8, BX
	CMPQ CX, $10
	JEQ  aes128

	MOVOU 0(AX), X0
	MOVOU 16(AX), X2
	MOVOU X0, 0(BX)
	MOVOU X2, 16(BX)
	EXP256A($0x01, 32)
	EXP256B(48)
	EXP256A($0x02, 64)
	EXP256B(80)
	EXP256A($0x04, 96)
	EXP256B(112)
	EXP256A($0x08, 128)
	EXP256B(144)
	EXP256A($0x10, 160)
	EXP256B(176)
	EXP256A($0x20, 192)
	EXP256B(208)
	EXP256A($0x40, 224)
	JMP inverse

aes128:
	MOVOU 0(AX), X0
	MOVOU X0, 0(BX)
	EXP128($0x01, 16)
	EXP128($0x02, 32)
	EXP128($0x04, 48)
	EXP128($0x08, 64)
	EXP128($0x10, 80)
	EXP128($0x20, 96)
	EXP128($0x40, 112)
	EXP128($0x80, 128)
	EXP128($0x1b, 144)
	EXP128($0x36, 160)

inverse:
	TESTQ DX, DX
	JZ    done
	ADDQ  R8, DX
	MOVQ  CX, R9
	SHLQ  $4, R9
	// The first and last round keys swap places unchanged.
	MOVOU (BX)(R9*1), X0
	MOVOU X0, (DX)
	MOVOU (BX), X0
	MOVOU X0, (DX)(R9*1)
	// dec[i] = InvMixColumns(enc[rounds-i]) for 0 < i < rounds.
	MOVQ $16, R10
	SUBQ $16, R9

imc:
	TESTQ  R9, R9
	JZ     done
	MOVOU  (BX)(R9*1), X0
	AESIMC X0, X1
	MOVOU  X1, (DX)(R10*1)
	ADDQ   $16, R10
	SUBQ   $16, R9
	JMP    imc

done:
	PXOR X0, X0
	PXOR X1, X1
	PXOR X2, X2
	PXOR X3, X3
	RET

// func cpuid(leaf, sub uint32) (a, b, c, d uint32)
TEXT ·cpuid(SB), NOSPLIT, $0-24
	MOVL leaf+0(FP), AX
	MOVL sub+4(FP), CX
	CPUID
	MOVL AX, a+8(FP)
	MOVL BX, b+12(FP)
	MOVL CX, c+16(FP)
	MOVL DX, d+20(FP)
	RET
