package config

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite docs/config.md and deploy/dmarc-milter.toml")

// docKey is one documented setting or section.
type docKey struct {
	path    string // dotted TOML key
	section bool   // a [table]
	doc     string // doc comment without the Default: line
	def     string // Default: value from the comment
	actual  string // the default from Default(), rendered as TOML
}

// docFiles are the files whose struct fields' doc comments document the
// configuration: config.go, and the files of sections kept apart.
var docFiles = []string{"config.go", "intake.go", "web.go"}

// fieldDocs reads the doc comments of every struct field in docFiles,
// keyed by "Type.Field".
func fieldDocs(t *testing.T) map[string]string {
	t.Helper()
	docs := map[string]string{}
	for _, name := range docFiles {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		inspectDocs(f, docs)
	}
	return docs
}

func inspectDocs(f *ast.File, docs map[string]string) {
	ast.Inspect(f, func(n ast.Node) bool {
		ts, ok := n.(*ast.TypeSpec)
		if !ok {
			return true
		}
		st, ok := ts.Type.(*ast.StructType)
		if !ok {
			return true
		}
		for _, fl := range st.Fields.List {
			for _, name := range fl.Names {
				docs[ts.Name.Name+"."+name.Name] = strings.TrimSpace(fl.Doc.Text())
			}
		}
		return false
	})
}

// collectKeys walks the Config type in declaration order.
func collectKeys(t *testing.T) []docKey {
	docs := fieldDocs(t)
	var keys []docKey
	var walk func(rt reflect.Type, rv reflect.Value, prefix string)
	walk = func(rt reflect.Type, rv reflect.Value, prefix string) {
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			path := prefix + f.Tag.Get("toml")
			doc := docs[rt.Name()+"."+f.Name]
			if doc == "" {
				t.Errorf("%s.%s (%s) has no doc comment", rt.Name(), f.Name, path)
			}
			doc = strings.Replace(doc, f.Name+" ", "`"+f.Tag.Get("toml")+"` ", 1)
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(Network{}) {
				keys = append(keys, docKey{path: path, section: true, doc: doc})
				walk(f.Type, rv.Field(i), path+".")
				continue
			}
			k := docKey{path: path, actual: tomlValue(rv.Field(i))}
			body, def, ok := strings.Cut(doc, "\nDefault: ")
			if !ok {
				t.Errorf("%s: doc comment has no \"Default:\" line", path)
			}
			k.doc, k.def = body, strings.TrimSpace(def)
			keys = append(keys, k)
		}
	}
	walk(reflect.TypeOf(Config{}), reflect.ValueOf(*Default()), "")
	return keys
}

// tomlValue renders a default as TOML.
func tomlValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return strconv.Quote(x.String())
	case Network:
		return strconv.Quote(x.Prefix.String())
	}
	switch v.Kind() {
	case reflect.String:
		return strconv.Quote(v.String())
	case reflect.Int:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = tomlValue(v.Index(i))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	panic(fmt.Sprintf("tomlValue: unsupported %v", v.Type()))
}

func renderMarkdown(keys []docKey) string {
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("<!-- Generated from internal/config/config.go by `go generate ./internal/config`. Do not edit. -->\n\n")
	b.WriteString("dmarc-milter reads one TOML file (`dmarc-milter serve --config FILE`). Every key is optional:\n")
	b.WriteString("with no file at all the daemon runs on the defaults below. An unknown key is an error that names\n")
	b.WriteString("the key and its line; `dmarc-milter check-config --config FILE` checks a file and exits 2 with one\n")
	b.WriteString("message when it is wrong. Durations are Go durations (`\"1m30s\"`). SIGHUP reloads the file; an\n")
	b.WriteString("invalid file is refused and the running configuration stays in force. `deploy/dmarc-milter.toml`\n")
	b.WriteString("is an example file with every key commented out at its default.\n\n")
	b.WriteString("Command-line flags of `serve` override the file: `--listen`, `--authserv-id`, `--nameserver`\n(repeatable; replaces `dns.nameservers`).\n")
	for _, k := range keys {
		if k.section {
			fmt.Fprintf(&b, "\n## [%s]\n\n%s\n", k.path, oneLine(k.doc))
			continue
		}
		fmt.Fprintf(&b, "\n### `%s`\n\n%s\n\nDefault: `%s`\n", k.path, oneLine(k.doc), k.actual)
	}
	return b.String()
}

func renderExample(keys []docKey) string {
	var b strings.Builder
	b.WriteString("# dmarc-milter configuration (TOML). Every key is commented out at its default;\n")
	b.WriteString("# uncomment and change what you need. Reference: docs/config.md.\n")
	b.WriteString("# Generated from internal/config/config.go by `go generate ./internal/config`. Do not edit.\n")
	for _, k := range keys {
		if k.section {
			fmt.Fprintf(&b, "\n%s\n[%s]\n", comment(k.doc), k.path)
			continue
		}
		name := k.path[strings.LastIndexByte(k.path, '.')+1:]
		fmt.Fprintf(&b, "\n%s\n#%s = %s\n", comment(k.doc), name, k.actual)
	}
	return b.String()
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func comment(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight("# "+l, " ")
	}
	return strings.Join(lines, "\n")
}

// TestGeneratedFiles checks that every field's "Default:" matches Default()
// and that docs/config.md and deploy/dmarc-milter.toml are up to date (-update
// rewrites them).
func TestGeneratedFiles(t *testing.T) {
	keys := collectKeys(t)
	for _, k := range keys {
		if !k.section && k.def != k.actual {
			t.Errorf("%s: doc comment says Default: %s, Default() gives %s", k.path, k.def, k.actual)
		}
	}
	files := map[string]string{
		"../../docs/config.md":           renderMarkdown(keys),
		"../../deploy/dmarc-milter.toml": renderExample(keys),
	}
	for path, want := range files {
		if *update {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go generate ./internal/config)", err)
		}
		if d := cmp.Diff(want, string(got)); d != "" {
			t.Errorf("%s is stale; run go generate ./internal/config (-want +got):\n%s", path, d)
		}
	}
}

// TestExampleFileIsDefault uncomments every key of the example file and
// checks that the result parses to exactly Default().
func TestExampleFileIsDefault(t *testing.T) {
	data, err := os.ReadFile("../../deploy/dmarc-milter.toml")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "#") && strings.Contains(l, " = ") && !strings.HasPrefix(l, "# ") {
			l = l[1:]
		}
		out = append(out, l)
	}
	got, err := Parse("example", []byte(strings.Join(out, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(Default(), got, cmp.Comparer(func(a, b Network) bool { return a == b })); d != "" {
		t.Errorf("uncommented example differs from Default() (-want +got):\n%s", d)
	}
}
