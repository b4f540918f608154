//go:build !amd64 || purego

package secagg

const (
	useAddWordsAsm   = false
	addWordsAsmBlock = 16
)

func addWordsAsm(acc *uint64, src *byte, n int) uint64 {
	panic("unreachable: no assembly kernel on this platform")
}
