//go:build unix

package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// chownRootFile gives path to the owner of its directory when we run as root
// and path is root's (a file we just made). Elsewhere it does nothing. Lchown:
// a symbolic link planted in the directory is not followed.
func chownRootFile(path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid != 0 {
		return nil
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	dst, ok := di.Sys().(*syscall.Stat_t)
	if !ok || dst.Uid == 0 {
		return nil
	}
	if err := os.Lchown(path, int(dst.Uid), int(dst.Gid)); err != nil {
		return fmt.Errorf("store: give %s to the directory's owner: %w", path, err)
	}
	return nil
}
