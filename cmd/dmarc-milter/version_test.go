package main

import (
	"bytes"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadBuildFacts(t *testing.T) {
	x := func(v string) *debug.Module { return &debug.Module{Path: pslModule, Version: v} }
	cases := []struct {
		name   string
		bi     *debug.BuildInfo
		ok     bool
		commit string // the -X main.commit value
		want   buildFacts
	}{
		{name: "no build info", want: buildFacts{Commit: "unknown", GoVersion: runtime.Version(), PSLVersion: "unknown"}},
		{name: "vcs stamped", ok: true, bi: &debug.BuildInfo{
			Deps: []*debug.Module{{Path: "github.com/miekg/dns", Version: "v1.1.73"}, x("v0.62.0")},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.time", Value: "2026-12-07T08:00:00Z"},
				{Key: "vcs.modified", Value: "true"}},
		}, want: buildFacts{Commit: "abc", CommitTime: "2026-12-07T08:00:00Z", Modified: true, GoVersion: runtime.Version(), PSLVersion: "v0.62.0"}},
		{name: "replaced module", ok: true, bi: &debug.BuildInfo{
			Deps: []*debug.Module{{Path: pslModule, Version: "v0.60.0", Replace: x("v0.63.0")}},
		}, want: buildFacts{Commit: "unknown", GoVersion: runtime.Version(), PSLVersion: "v0.63.0"}},
		{name: "commit from ldflags wins", ok: true, commit: "def", bi: &debug.BuildInfo{
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}},
		}, want: buildFacts{Commit: "def", GoVersion: runtime.Version(), PSLVersion: "unknown"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := commit
			commit = tc.commit
			defer func() { commit = old }()
			if d := cmp.Diff(tc.want, readBuildFacts(tc.bi, tc.ok)); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

// TestVersionCommand: the test binary records its module dependencies, so
// the PSL module's version is known here too.
func TestVersionCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	bi, _ := debug.ReadBuildInfo()
	var psl string
	for _, m := range bi.Deps {
		if m.Path == pslModule {
			psl = m.Version
		}
	}
	for _, want := range []string{"dmarc-milter " + version + " (", "\ncommit: ", "\ngo: " + runtime.Version() + "\n",
		"\npublic suffix list: golang.org/x/net " + psl + " "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("version output lacks %q:\n%s", want, out.String())
		}
	}
	if psl == "" || strings.Contains(out.String(), "list: golang.org/x/net unknown") {
		t.Errorf("the PSL module version is unknown in the test binary:\n%s", out.String())
	}
}
