package test

import (
	"bytes"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkGofmt reports each Go file that gofmt would change, at its first
// line that differs: CI's gofmt step fails on it, so a commit that runs
// the presubmit tests must not carry one.
func checkGofmt(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		want, err := format.Source(f.src)
		if err != nil {
			out = append(out, fmt.Sprintf("%s:1: gofmt: %v", f.path, err))
			continue
		}
		if bytes.Equal(want, f.src) {
			continue
		}
		got, fixed := strings.Split(string(f.src), "\n"), strings.Split(string(want), "\n")
		line := 1
		for line <= len(got) && line <= len(fixed) && got[line-1] == fixed[line-1] {
			line++
		}
		out = append(out, fmt.Sprintf("%s:%d: not formatted as gofmt formats it", f.path, line))
	}
	return out
}

// TestGofmt runs the check on a tree with one unformatted file, which it
// must flag at the right line, and on the repository, which must be
// clean. The bad file is written at run time: one kept in testdata would
// fail CI's own gofmt step.
func TestGofmt(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{
		"good.go": "package p\n\nfunc F() int { return 1 }\n",
		"bad.go":  "package p\n\nfunc G() int {\n\treturn 2\n}\nvar x = \"a\"+\"b\"\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := checkGofmt(loadTree(t, dir))
	checkFormat(t, got)
	if want := []string{"bad.go:6"}; fmt.Sprint(positions(got)) != fmt.Sprint(want) {
		t.Errorf("got findings %q, want at %v", got, want)
	}
	for _, f := range checkGofmt(loadTree(t, repoRoot(t))) {
		t.Error(f)
	}
}
