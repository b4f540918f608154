//go:build !purego

#include "textflag.h"

// func addWordsAsm(acc *uint64, src *byte, n int) uint64
//
// acc[i] += little-endian word i of src, for i < n (n a positive multiple of 16); returns the
// OR of the words of src. Loads and stores are unaligned (src is a network buffer).
TEXT ·addWordsAsm(SB), NOSPLIT, $0-32
	MOVQ acc+0(FP), DI
	MOVQ src+8(FP), SI
	MOVQ n+16(FP), CX
	SHRQ $4, CX
	VPXOR Y8, Y8, Y8

loop:
	VMOVDQU 0(SI), Y0
	VMOVDQU 32(SI), Y1
	VMOVDQU 64(SI), Y2
	VMOVDQU 96(SI), Y3
	VPOR    Y0, Y8, Y8
	VPOR    Y1, Y8, Y8
	VPOR    Y2, Y8, Y8
	VPOR    Y3, Y8, Y8
	VPADDQ  0(DI), Y0, Y0
	VPADDQ  32(DI), Y1, Y1
	VPADDQ  64(DI), Y2, Y2
	VPADDQ  96(DI), Y3, Y3
	VMOVDQU Y0, 0(DI)
	VMOVDQU Y1, 32(DI)
	VMOVDQU Y2, 64(DI)
	VMOVDQU Y3, 96(DI)
	ADDQ    $128, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     loop

	VEXTRACTI128 $1, Y8, X9
	VPOR         X9, X8, X8
	VPSHUFD      $0x4e, X8, X9
	VPOR         X9, X8, X8
	VMOVQ        X8, AX
	VZEROUPPER
	MOVQ         AX, ret+24(FP)
	RET
