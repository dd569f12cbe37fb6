package verify

import (
	"errors"
	"testing"
)

func TestParseKeyRecord(t *testing.T) {
	t.Parallel()
	cases := []struct {
		rec     string
		err     error
		revoked bool
		keyType string
		flags   int
	}{
		{"v=DKIM1; k=rsa; p=", nil, true, "rsa", 0},
		{"p=AAAA", nil, false, "", 0},
		{"v=DKIM1; k=Ed25519; t=y:s; p=AAAA", nil, false, "ed25519", 2},
		{"k=rsa; v=DKIM1; p=AAAA", ErrKeyVersion, false, "", 0}, // v= not first
		{"v=DKIM2; p=AAAA", ErrKeyVersion, false, "", 0},
		{"v=DKIM1; k=rsa", ErrKeySyntax, false, "", 0},          // no p=
		{"v=DKIM1; p=!!", ErrKeySyntax, false, "", 0},           // not base64
		{"v=DKIM1; p=AAAA; p=AAAA", ErrKeySyntax, false, "", 0}, // duplicate tag
		{"v=DKIM1; p", ErrKeySyntax, false, "", 0},              // not a tag-spec
	}
	for _, tc := range cases {
		k, err := ParseKeyRecord(tc.rec)
		if !errors.Is(err, tc.err) || (err == nil) != (tc.err == nil) {
			t.Errorf("%q: error %v, want %v", tc.rec, err, tc.err)
			continue
		}
		if err != nil {
			continue
		}
		if k.Revoked != tc.revoked || k.KeyType != tc.keyType || len(k.Flags) != tc.flags {
			t.Errorf("%q: %+v", tc.rec, k)
		}
	}
}

// FuzzParseKeyRecord: no panic; an error comes without a record; a record
// is revoked exactly when it has no key; and a record the verifier can use
// is never refused here (this reading is the more lenient one).
func FuzzParseKeyRecord(f *testing.F) {
	for _, s := range []string{"v=DKIM1; k=rsa; p=", "p=AAAA", "v=DKIM1; h=sha1:sha256; s=email:*; t=y; p=MFww", "v=DKIM1;;p= A A A A ;", "k=x; v=DKIM1", "a=b=c; p=AAAA", "p=AAAA; p=AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		k, err := ParseKeyRecord(rec)
		if err != nil {
			if k != nil {
				t.Fatalf("%q: error with a record", rec)
			}
			if parseKey(rec).err == nil {
				t.Fatalf("%q: refused (%v), but the verifier uses it", rec, err)
			}
			return
		}
		if k.Revoked != (k.PublicKey == nil) {
			t.Fatalf("%q: revoked %t with key %v", rec, k.Revoked, k.PublicKey)
		}
	})
}
