// Package footprint keeps a long-running, mostly idle daemon's resident memory close to what
// it really uses. LeadMaster runs one session-manager per cliente, so every megabyte counts
// once per cliente.
//
// Start-up touches many pages of the binary only once (protobuf descriptors of WhatsApp's
// schema are registered at init, relocations are applied), and the kernel's fault-around maps
// neighbouring pages of the executable in 64 KiB batches. Those pages stay in each process's
// resident set although they are never used again. Trim asks the kernel to unmap the
// read-only, unmodified file-backed pages of our own executable (they stay in the shared page
// cache; a page that is needed again comes back with a minor fault) and returns free heap to
// the system.
package footprint

import (
	"bufio"
	"fmt"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Trim drops the executable's clean read-only pages from this process's page tables and
// frees unused heap. It returns how many bytes of mappings it advised. Mappings that hold
// private (relocated or written) pages are left alone, since dropping those would lose data.
func Trim() (int64, error) {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	defer f.Close()
	type mapping struct {
		start, end uintptr
		eligible   bool
	}
	var maps []mapping
	var cur *mapping
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			start, end, _ := strings.Cut(fields[0], "-")
			s, err1 := strconv.ParseUint(start, 16, 64)
			e, err2 := strconv.ParseUint(end, 16, 64)
			perms := fields[1]
			path := ""
			if len(fields) >= 6 {
				path = fields[5]
			}
			maps = append(maps, mapping{
				start: uintptr(s), end: uintptr(e),
				// Read-only (text or rodata), private, backed by our executable.
				eligible: err1 == nil && err2 == nil && path == exe && perms[1] == '-' && perms[3] == 'p',
			})
			cur = &maps[len(maps)-1]
			continue
		}
		if cur == nil {
			continue
		}
		// Any anonymous (copied-on-write) page means the mapping differs from the file.
		if name, val, ok := strings.Cut(line, ":"); ok && (name == "Anonymous" || name == "Private_Dirty") {
			if strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(val), "kB")) != "0" {
				cur.eligible = false
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("trim: %w", err)
	}
	var advised int64
	for _, m := range maps {
		if !m.eligible {
			continue
		}
		// MADV_RANDOM first: pages touched later come back one by one, not 64 KiB at a time.
		if err := madvise(m.start, m.end, unix.MADV_RANDOM); err != nil {
			return advised, fmt.Errorf("trim: madvise: %w", err)
		}
		if err := madvise(m.start, m.end, unix.MADV_DONTNEED); err != nil {
			return advised, fmt.Errorf("trim: madvise: %w", err)
		}
		advised += int64(m.end - m.start)
	}
	return advised, nil
}
