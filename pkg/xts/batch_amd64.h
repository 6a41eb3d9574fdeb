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
