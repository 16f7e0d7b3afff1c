package footprint

import "golang.org/x/sys/unix"

// madvise advises the kernel about the address range [start, end), which is not Go memory.
func madvise(start, end uintptr, advice int) error {
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, start, end-start, uintptr(advice)); errno != 0 {
		return errno
	}
	return nil
}
