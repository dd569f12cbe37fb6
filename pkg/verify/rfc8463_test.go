package verify

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-milter/dmarc-milter/internal/dnstest"
	"github.com/emersion/go-msgauth/dkim"
	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"
)

// The dkimpy vectors (testdata/dkimpy, see SOURCE.md there), among them the
// RFC 8463 Appendix A.3 example: the RFC 6376 sample message signed with
// ed25519-sha256 (s=brisbane) and rsa-sha256 (s=test).
// https://datatracker.ietf.org/doc/html/rfc8463#appendix-A.3

type dkimpyVectors struct {
	Presigned []struct {
		File   string            `yaml:"file"`
		What   string            `yaml:"what"`
		DNS    map[string]string `yaml:"dns"`
		Expect []string          `yaml:"expect"`
	} `yaml:"presigned"`
	Keypairs []struct {
		Private        string `yaml:"private"`
		PublicRecord   string `yaml:"public_record"`
		SelectorDomain string `yaml:"selector_domain"`
	} `yaml:"keypairs"`
	BadKeyRecords []struct {
		File string `yaml:"file"`
	} `yaml:"bad_key_records"`
	GoodKeyRecords []struct {
		File string `yaml:"file"`
	} `yaml:"good_key_records"`
}

const dkimpyDir = "testdata/dkimpy"

func TestRFC8463(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(dkimpyDir, "verify-vectors.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var vec dkimpyVectors
	if err := yaml.Unmarshal(raw, &vec); err != nil {
		t.Fatal(err)
	}
	if len(vec.Presigned) != 4 || vec.Presigned[0].File != "rfc6376.signed.msg" {
		t.Fatalf("unexpected manifest: %d presigned vectors", len(vec.Presigned))
	}
	for _, p := range vec.Presigned {
		t.Run("presigned/"+p.File, func(t *testing.T) {
			srv := dnstest.New(t, "")
			for name, val := range p.DNS {
				addTXT(srv, name, dkimpyValue(t, val))
			}
			got := verifyMessage(t, newCache(t, srv, time.Second), DKIMConfig{}, dkimpyMessage(t, p.File), 4096)
			var res []string
			for _, g := range got {
				res = append(res, string(g.Result))
			}
			if d := cmp.Diff(p.Expect, res); d != "" {
				t.Errorf("%s (-want +got)\n%s\n%+v", p.What, d, got)
			}
		})
	}
	// Sign test.message with each key pair, publish the public half, verify.
	for _, kp := range vec.Keypairs {
		t.Run("keypair/"+kp.Private, func(t *testing.T) {
			name := kp.SelectorDomain
			if name == "" {
				name = "test._domainkey.example.com"
			}
			sel, dom, _ := strings.Cut(name, "._domainkey.")
			rec := dkimpyValue(t, kp.PublicRecord)
			if !strings.Contains(rec, "p=") { // the "_wo_markers" files: bare base64
				rec = "v=DKIM1; k=rsa; p=" + rec
			}
			got := signAndVerify(t, dkimpyKey(t, kp.Private), sel, dom, rec)
			if got.Result != ResultPass {
				t.Errorf("%+v, want pass", got)
			}
		})
	}
	// Key records that must not verify, and ones that must.
	rsa1024 := dkimpyKey(t, "test.private")
	for _, k := range vec.BadKeyRecords {
		t.Run("badkey/"+k.File, func(t *testing.T) {
			got := signAndVerify(t, rsa1024, "test", "example.com", dkimpyValue(t, k.File))
			if got.Result != ResultPermError {
				t.Errorf("%+v, want permerror", got)
			}
		})
	}
	for _, k := range vec.GoodKeyRecords {
		t.Run("goodkey/"+k.File, func(t *testing.T) {
			got := signAndVerify(t, rsa1024, "test", "example.com", dkimpyValue(t, k.File))
			if got.Result != ResultPass || got.KeyBits != 1024 {
				t.Errorf("%+v, want pass with a 1024-bit key", got)
			}
		})
	}
}

// signAndVerify signs dkimpy's test.message as sel._domainkey.dom, publishes
// rec there and returns the one result.
func signAndVerify(t *testing.T, key crypto.Signer, sel, dom, rec string) DKIMResult {
	t.Helper()
	srv := dnstest.New(t, "")
	addTXT(srv, sel+"._domainkey."+dom, rec)
	msg := sign(t, dkimpyMessage(t, "test.message"), dkim.SignOptions{
		Domain: dom, Selector: sel, Signer: key,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationSimple,
	})
	got := verifyMessage(t, newCache(t, srv, time.Second), DKIMConfig{}, msg, 4096)
	if len(got) != 1 {
		t.Fatalf("%d results", len(got))
	}
	return got[0]
}

// dkimpyValue is a manifest value: the content of a file in data/ when it
// names one, else the value itself.
func dkimpyValue(t *testing.T, v string) string {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(dkimpyDir, "data", v)); err == nil {
		return strings.TrimSpace(string(b))
	}
	return v
}

// dkimpyMessage reads a message (dkimpy's files have LF line ends) as CRLF.
func dkimpyMessage(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dkimpyDir, "data", file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.ReplaceAll(strings.ReplaceAll(string(b), "\r\n", "\n"), "\n", "\r\n")
}

// dkimpyKey reads a private key: PEM RSA, or a base64 Ed25519 seed.
func dkimpyKey(t *testing.T, file string) crypto.Signer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dkimpyDir, "data", file))
	if err != nil {
		t.Fatal(err)
	}
	if blk, _ := pem.Decode(b); blk != nil {
		if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
			return k
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return k.(crypto.Signer)
	}
	seed, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("%s: not an Ed25519 seed", file)
	}
	return ed25519.NewKeyFromSeed(seed)
}
