package mailout

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrSecretFile is wrapped by every error about a password or key file.
var ErrSecretFile = errors.New("mailout: secret file")

// maxSecretFile bounds what readSecretFile reads: a password or a PEM
// private key (an RSA 4096 key is about 3.3 KiB).
const maxSecretFile = 64 << 10

// readSecretFile reads a file holding a secret: the relay password or the
// DKIM private key. It refuses a file that other users may read or write
// (any "other" permission bit): a world-readable credential is as good as
// published to every local account, a warning in a log is easily missed,
// and the fix is one chmod — as OpenSSH refuses an unprotected private
// key. Group bits are allowed, so that root:dmarc-milter 0640 works.
func readSecretFile(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: no file given", ErrSecretFile)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretFile, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrSecretFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o007 != 0 {
		return nil, fmt.Errorf("%w: %s is accessible to other users (mode %04o): chmod o-rwx %s", ErrSecretFile, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSecretFile, err)
	}
	if len(b) > maxSecretFile {
		return nil, fmt.Errorf("%w: %s is larger than %d octets", ErrSecretFile, path, maxSecretFile)
	}
	return b, nil
}

// readPasswordFile reads a password: the first line of the file, without its
// line end. An empty password or one with control characters is refused
// (it goes into an AUTH PLAIN message).
func readPasswordFile(path string) (string, error) {
	b, err := readSecretFile(path)
	if err != nil {
		return "", err
	}
	pw, _, _ := strings.Cut(string(b), "\n")
	pw = strings.TrimSuffix(pw, "\r")
	if pw == "" {
		return "", fmt.Errorf("%w: %s: empty password", ErrSecretFile, path)
	}
	for _, r := range pw {
		if r < 0x20 || r == 0x7f {
			return "", fmt.Errorf("%w: %s: control character in the password", ErrSecretFile, path)
		}
	}
	return pw, nil
}
