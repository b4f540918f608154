package secagg

import "encoding/binary"

// addWords adds the little-endian words of src to acc (wrapping, element-wise) and returns the
// bitwise OR of the words added, from which the caller checks their range in one test.
// src must hold at least 8*len(acc) bytes.
func addWords(acc []uint64, src []byte) uint64 {
	head := 0
	var or uint64
	if useAddWordsAsm && len(acc) >= addWordsAsmBlock {
		head = len(acc) &^ (addWordsAsmBlock - 1)
		_ = src[8*head-1] // the assembly reads 8*head bytes
		or = addWordsAsm(&acc[0], &src[0], head)
	}
	return or | addWordsGeneric(acc[head:], src[8*head:])
}

// addWordsGeneric is addWords in plain Go.
func addWordsGeneric(acc []uint64, src []byte) uint64 {
	src = src[:8*len(acc)]
	var or uint64
	for len(acc) >= 4 {
		w0 := binary.LittleEndian.Uint64(src[0:8])
		w1 := binary.LittleEndian.Uint64(src[8:16])
		w2 := binary.LittleEndian.Uint64(src[16:24])
		w3 := binary.LittleEndian.Uint64(src[24:32])
		or |= w0 | w1 | w2 | w3
		acc[0] += w0
		acc[1] += w1
		acc[2] += w2
		acc[3] += w3
		acc, src = acc[4:], src[32:]
	}
	for i := range acc {
		w := binary.LittleEndian.Uint64(src[8*i:])
		or |= w
		acc[i] += w
	}
	return or
}

// subWords undoes addWords (wrapping subtraction). It only runs on rejected input.
func subWords(acc []uint64, src []byte) {
	for i := range acc {
		acc[i] -= binary.LittleEndian.Uint64(src[8*i:])
	}
}
