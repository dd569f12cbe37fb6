package verify

import (
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
)

// TestDKIMFieldNameShift: a valid signature of the attacker's domain under
// a field name that go-msgauth trims to DKIM-Signature ("DKIM-Signature\v")
// and a junk DKIM-Signature claiming the victim's domain. If our list and
// go-msgauth's did not pair up, the attacker's pass would be reported for
// the victim's d= (and DMARC would pass for From: victim). It must never be.
func TestDKIMFieldNameShift(t *testing.T) {
	_, r, k := dkimFixture(t)
	msg := "From: ceo@victim.example\r\nTo: a@b.example\r\nSubject: pay\r\n\r\nwire it\r\n"
	signed := sign(t, msg, dkim.SignOptions{Domain: "example.com", Selector: "ed", Signer: k.ed,
		HeaderCanonicalization: dkim.CanonicalizationRelaxed, BodyCanonicalization: dkim.CanonicalizationRelaxed})
	junk := "DKIM-Signature: v=1; a=ed25519-sha256; d=victim.example; s=x; h=from; bh=AAAA; b=AAAA\r\n"
	for _, ws := range []string{"\v", "\f", "\u0085", "\u00a0"} {
		forged := strings.Replace(signed, "DKIM-Signature:", "DKIM-Signature"+ws+":", 1)
		// The junk signature comes after the forged one, so that a shifted
		// pairing gives the forged one's pass to the junk one's d=.
		forged = strings.Replace(forged, "From: ceo@", junk+"From: ceo@", 1)
		got := verifyMessage(t, r, DKIMConfig{}, forged, 4096)
		for _, res := range got {
			if res.Result == ResultPass && res.Domain == "victim.example" {
				t.Errorf("name %q: %v: a pass for the victim's domain", ws, results(got))
			}
		}
	}
}
