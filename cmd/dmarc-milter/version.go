package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// pslModule is the module whose data is the embedded Public Suffix List
// (pkg/policy finds Organizational Domains with its publicsuffix package).
// The list is compiled into that package and carries no version of its
// own that the package exports, so the module version identifies it.
const pslModule = "golang.org/x/net"

// commit is the VCS revision, set at build time (-ldflags -X
// main.commit=...) by the Makefile; without it, the revision the Go
// toolchain recorded (when it stamps VCS information) is used.
var commit = ""

// buildFacts are what version prints besides the version itself.
type buildFacts struct {
	Commit     string // VCS revision, "unknown" when the build did not record one
	CommitTime string // the commit's time (RFC 3339), "" when unknown
	Modified   bool   // the tree had uncommitted changes
	GoVersion  string
	PSLVersion string // version of pslModule, "unknown" when not recorded
}

// readBuildFacts reads the facts the Go toolchain recorded in the binary
// (bi, ok as debug.ReadBuildInfo returns them) and the commit set at build
// time.
func readBuildFacts(bi *debug.BuildInfo, ok bool) buildFacts {
	f := buildFacts{Commit: "unknown", GoVersion: runtime.Version(), PSLVersion: "unknown"}
	if ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				f.Commit = s.Value
			case "vcs.time":
				f.CommitTime = s.Value
			case "vcs.modified":
				f.Modified = s.Value == "true"
			}
		}
		for _, m := range bi.Deps {
			if m.Path != pslModule {
				continue
			}
			if m.Replace != nil {
				m = m.Replace
			}
			f.PSLVersion = m.Version
		}
	}
	if commit != "" {
		f.Commit = commit
	}
	return f
}

// printVersion writes the version line and the build facts.
func printVersion(w io.Writer) {
	f := readBuildFacts(debug.ReadBuildInfo())
	fmt.Fprintf(w, "dmarc-milter %s (%s, %s/%s)\n", version, f.GoVersion, runtime.GOOS, runtime.GOARCH)
	rev := f.Commit
	if f.CommitTime != "" {
		rev += " (" + f.CommitTime + ")"
	}
	if f.Modified {
		rev += ", with uncommitted changes"
	}
	fmt.Fprintf(w, "commit: %s\n", rev)
	fmt.Fprintf(w, "go: %s\n", f.GoVersion)
	fmt.Fprintf(w, "public suffix list: %s %s (golang.org/x/net/publicsuffix)\n", pslModule, f.PSLVersion)
}
