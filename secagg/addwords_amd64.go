//go:build !purego

package secagg

import "golang.org/x/sys/cpu"

// useAddWordsAsm selects the AVX2 kernel: it adds 16 words per iteration where scalar Go adds
// one, which is what keeps the coordinator's homomorphic sum within a small factor of a
// SIMD float64 sum (gonum's floats.Add) of the same vectors.
var useAddWordsAsm = cpu.X86.HasAVX2

// addWordsAsmBlock is the number of words the assembly processes per iteration.
const addWordsAsmBlock = 16

// addWordsAsm is addWords for n words, n a multiple of addWordsAsmBlock; see addwords_amd64.s.
//
//go:noescape
func addWordsAsm(acc *uint64, src *byte, n int) uint64
