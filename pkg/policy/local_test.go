package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLocalPolicyValidate(t *testing.T) {
	if err := (LocalPolicy{}).Validate(); err != nil {
		t.Errorf("zero LocalPolicy: %v", err)
	}
	bad := []LocalPolicy{
		{Mode: "loud"},
		{OnReject: "drop"},
		{OnTempError: "reject"},
		{From: FromPolicy{Missing: FromEvaluate}},
		{From: FromPolicy{MultipleDomains: "skip"}},
		{AllowFrom: []string{"not a domain"}},
		{Indirect: "accept"},
		{Forwarders: TrustedForwarders{ARCSealers: []string{"not a domain"}}},
	}
	for _, lp := range bad {
		if err := lp.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", lp)
		}
	}
	d := LocalPolicy{}.WithDefaults()
	want := LocalPolicy{Mode: ModeEnforce, OnReject: RejectUnlessIndirect, OnTempError: TempErrorTempFail, Indirect: IndirectQuarantine,
		From: FromPolicy{MultipleFields: FromEvaluate, MultipleDomains: FromEvaluate, TooManyDomains: FromReject,
			NoMailbox: FromReject, Missing: FromReject, Unparseable: FromReject, MaxDomains: 5}}
	if diff := cmp.Diff(want, d); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}
