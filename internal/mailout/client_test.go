package mailout

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		relay    string
		host     string
		addr     string
		implicit bool
	}{
		{"", "localhost", "localhost:25", false},
		{"smtp://localhost", "localhost", "localhost:25", false},
		{"smtp://mail.example.com:587", "mail.example.com", "mail.example.com:587", false},
		{"smtps://mail.example.com", "mail.example.com", "mail.example.com:465", true},
		{"SMTPS://mail.example.com:4650/", "mail.example.com", "mail.example.com:4650", true},
		{"smtp://[::1]:2525", "::1", "[::1]:2525", false},
	} {
		host, addr, implicit, err := parseRelay(tc.relay)
		if err != nil || host != tc.host || addr != tc.addr || implicit != tc.implicit {
			t.Errorf("parseRelay(%q) = %q, %q, %v, %v; want %q, %q, %v", tc.relay, host, addr, implicit, err, tc.host, tc.addr, tc.implicit)
		}
	}
	for _, bad := range []string{
		"localhost:25",                 // no scheme
		"lmtp://localhost",             // another scheme
		"smtp://user:pw@localhost",     // credentials do not belong in the URL
		"smtp://localhost/path",        // a path
		"smtp://localhost?starttls=no", // a query
		"smtp://localhost:0",           // port 0
		"smtp://localhost:70000",       // port out of range
		"smtp://",                      // no host
		"smtp:localhost",               // opaque
	} {
		if _, _, _, err := parseRelay(bad); !errors.Is(err, ErrConfig) {
			t.Errorf("parseRelay(%q): err %v, want ErrConfig", bad, err)
		}
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()
	good := passwordFile(t, "pw\n", 0o640)
	for _, tc := range []struct {
		name   string
		opts   ClientOptions
		verify bool
	}{
		{"defaults: local MTA, opportunistic, not verified", ClientOptions{HeloName: "mx.example.com"}, false},
		{"smtps verifies", ClientOptions{Relay: "smtps://mail.example.com", HeloName: "mx.example.com"}, true},
		{"required STARTTLS verifies", ClientOptions{StartTLS: StartTLSRequired, HeloName: "mx.example.com"}, true},
		{"AUTH verifies", ClientOptions{Username: "u", PasswordFile: good, HeloName: "mx.example.com"}, true},
		{"explicitly not verified", ClientOptions{Relay: "smtps://mail.example.com", TLSVerify: VerifyNo, HeloName: "mx.example.com"}, false},
		{"opportunistic but verified", ClientOptions{TLSVerify: VerifyYes, HeloName: "mx.example.com"}, true},
		{"address literal as HELO", ClientOptions{HeloName: "[192.0.2.1]"}, false},
		{"host name as HELO", ClientOptions{}, false},
	} {
		c, err := NewClient(tc.opts)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if c.Verifies() != tc.verify {
			t.Errorf("%s: Verifies() = %v", tc.name, c.Verifies())
		}
	}
	for _, tc := range []struct {
		name string
		opts ClientOptions
	}{
		{"bad STARTTLS policy", ClientOptions{StartTLS: "maybe"}},
		{"bad verify policy", ClientOptions{TLSVerify: "sometimes"}},
		{"bad HELO name", ClientOptions{HeloName: "bad name"}},
		{"password file without user", ClientOptions{PasswordFile: good}},
		{"user without password file", ClientOptions{Username: "u"}},
		{"world-readable password file", ClientOptions{Username: "u", PasswordFile: passwordFile(t, "pw", 0o644)}},
		{"missing CA file", ClientOptions{CAFile: filepath.Join(t.TempDir(), "none.pem")}},
		{"CA file without certificates", ClientOptions{CAFile: good}},
	} {
		tc.opts.HeloName = map[bool]string{true: tc.opts.HeloName, false: "mx.example.com"}[tc.opts.HeloName != ""]
		if _, err := NewClient(tc.opts); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: err %v, want ErrConfig", tc.name, err)
		}
	}
}

// TestReadPasswordFile: the first line without its end; refused when other
// users may read or write it, when empty, when not a regular file.
func TestReadPasswordFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		want    string
	}{
		{"secret\n", 0o600, "secret"},
		{"secret\r\nignored second line\n", 0o640, "secret"},
		{"with spaces ok", 0o400, "with spaces ok"},
	} {
		got, err := readPasswordFile(passwordFile(t, tc.content, tc.mode))
		if err != nil || got != tc.want {
			t.Errorf("%q %o: %q, %v; want %q", tc.content, tc.mode, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		content string
		mode    os.FileMode
		why     string
	}{
		{"secret", 0o644, "accessible to other users (mode 0644)"},
		{"secret", 0o602, "accessible to other users (mode 0602)"},
		{"secret", 0o601, "accessible to other users (mode 0601)"},
		{"", 0o600, "empty password"},
		{"\nsecret", 0o600, "empty password"},
		{"sec\x00ret", 0o600, "control character"},
		{strings.Repeat("x", maxSecretFile+1), 0o600, "larger than"},
	} {
		_, err := readPasswordFile(passwordFile(t, tc.content, tc.mode))
		if !errors.Is(err, ErrSecretFile) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%q %o: err %v, want ErrSecretFile (%s)", tc.content, tc.mode, err, tc.why)
		}
	}
	if _, err := readPasswordFile(t.TempDir()); !errors.Is(err, ErrSecretFile) {
		t.Errorf("directory: %v", err)
	}
	if _, err := readPasswordFile(filepath.Join(t.TempDir(), "none")); !errors.Is(err, ErrSecretFile) {
		t.Errorf("missing file: %v", err)
	}
}
