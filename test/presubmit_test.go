// Presubmit style checks: the rules of STYLE.md that a program can check,
// applied to the whole repository (coredns test/presubmit_test.go and
// test/readme_test.go are the model).
//
// Each check is a function from a tree of files to findings, each finding
// "file:line: what is wrong". Every check runs twice: on its known-bad
// fixture in testdata/presubmit/<check>/, where it must report exactly the
// file:line pairs listed in the fixture's want.txt (so no check can pass
// everything unnoticed), and on the repository, which must be clean.
// Directories named testdata, or starting with "." or "_", are skipped, as
// the go command skips them.

package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"

	"github.com/berthd/berth/internal/config"
)

// A check reports what is wrong in a tree, one "file:line: message" each.
type check func(*tree) []string

var checks = []struct {
	name  string // also the fixture directory under testdata/presubmit
	needs string // a file the tree must have, or the check is skipped
	check check
}{
	{"filenames", "", checkFileNames},
	{"errorstrings", "", checkErrorStrings},
	{"timenow", "", checkTimeNow},
	{"stdlog", "", checkStdLog},
	{"fuzzparse", "", checkFuzzParse},
	{"pkgdoc", "", checkPackageDoc},
	{"readme", "README.md", checkReadme},
	{"filesize", "", checkFileSize},
}

func TestPresubmit(t *testing.T) {
	root := repoRoot(t)
	repo := loadTree(t, root)
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Run("bad fixture flagged", func(t *testing.T) {
				dir := filepath.Join("testdata", "presubmit", c.name)
				got := c.check(loadTree(t, dir))
				checkFormat(t, got)
				if len(got) == 0 {
					t.Fatalf("%s: no findings; the check flags nothing", dir)
				}
				want := readWant(t, filepath.Join(dir, "want.txt"))
				if !slices.Equal(positions(got), want) {
					t.Errorf("%s: got findings\n\t%s\nwant findings at\n\t%s",
						dir, strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
				}
			})
			t.Run("repository clean", func(t *testing.T) {
				if c.needs != "" && !repo.has(c.needs) {
					t.Skipf("%s does not exist yet", c.needs)
				}
				got := c.check(repo)
				checkFormat(t, got)
				for _, f := range got {
					t.Error(f)
				}
			})
		})
	}
}

// tree is the files a check looks at: Go files parsed with comments, and
// the names of the other files.
type tree struct {
	fset  *token.FileSet
	files []*goFile         // sorted by path
	other map[string][]byte // non-Go files at the root (README.md), by name
}

type goFile struct {
	path string // slash-separated, relative to the tree root
	dir  string // path.Dir(path)
	test bool   // a _test.go file
	src  []byte
	ast  *ast.File
}

func (tr *tree) has(name string) bool { _, ok := tr.other[name]; return ok }

// at formats a finding at pos.
func (tr *tree) at(pos token.Pos, format string, args ...any) string {
	p := tr.fset.Position(pos)
	return fmt.Sprintf("%s:%d: %s", p.Filename, p.Line, fmt.Sprintf(format, args...))
}

// repoRoot walks up from the working directory to the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = up
	}
}

// loadTree reads and parses every Go file under root, and README.md.
func loadTree(t *testing.T, root string) *tree {
	t.Helper()
	tr := &tree{fset: token.NewFileSet(), other: map[string][]byte{}}
	if b, err := os.ReadFile(filepath.Join(root, "README.md")); err == nil {
		tr.other["README.md"] = b
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		f, err := parser.ParseFile(tr.fset, rel, src, parser.ParseComments)
		if err != nil {
			return err
		}
		tr.files = append(tr.files, &goFile{
			path: rel, dir: path.Dir(rel), test: strings.HasSuffix(name, "_test.go"), src: src, ast: f,
		})
		return nil
	})
	if err != nil {
		t.Fatalf("loading %s: %v", root, err)
	}
	return tr
}

var findingRE = regexp.MustCompile(`^[^:\s]+:[0-9]+: \S`)

// checkFormat checks that every finding reads "file:line: what is wrong".
func checkFormat(t *testing.T, findings []string) {
	t.Helper()
	for _, f := range findings {
		if !findingRE.MatchString(f) {
			t.Errorf("finding %q is not in the form \"file:line: what is wrong\"", f)
		}
	}
}

// positions returns the sorted "file:line" of each finding.
func positions(findings []string) []string {
	var ps []string
	for _, f := range findings {
		file, rest, _ := strings.Cut(f, ":")
		line, _, _ := strings.Cut(rest, ":")
		ps = append(ps, file+":"+line)
	}
	slices.Sort(ps)
	return ps
}

// readWant reads a fixture's want.txt: one "file:line" per line; blank
// lines and lines starting with # are ignored.
func readWant(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			want = append(want, line)
		}
	}
	slices.Sort(want)
	return want
}

// checkFileNames flags Go file names with a hyphen; STYLE.md allows only
// lowercase names with "_" for _test and build-constraint suffixes.
func checkFileNames(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		if strings.Contains(path.Base(f.path), "-") {
			out = append(out, tr.at(f.ast.Package, "file name has a hyphen; use lowercase words, with _ only for _test or a build suffix"))
		}
	}
	return out
}

// importNames returns the names under which f imports importPath (a file
// may import a package twice). Dot and blank imports are left out.
func importNames(f *ast.File, importPath string) []string {
	var names []string
	for _, im := range f.Imports {
		if p, _ := strconv.Unquote(im.Path.Value); p != importPath {
			continue
		}
		switch {
		case im.Name == nil:
			names = append(names, path.Base(importPath))
		case im.Name.Name != "." && im.Name.Name != "_":
			names = append(names, im.Name.Name)
		}
	}
	return names
}

// pkgSelector reports whether e is pkg.sel for one of the names under
// which the file imports a package (not a local variable that shadows it).
func pkgSelector(e ast.Expr, pkgs []string, sel string) bool {
	s, ok := e.(*ast.SelectorExpr)
	if !ok || s.Sel.Name != sel {
		return false
	}
	x, ok := s.X.(*ast.Ident)
	// The parser resolves local declarations; an import name stays unresolved.
	return ok && x.Obj == nil && slices.Contains(pkgs, x.Name)
}

// checkErrorStrings flags string literals given to errors.New and
// fmt.Errorf that start with a capital letter or end with '.', '!' or a
// newline. A leading acronym or identifier (a first word with two or more
// capitals: PCP, UPnP, NAT-PMP, AddPortMapping) and a leading %-verb are fine.
func checkErrorStrings(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		errorsPkg, fmtPkg := importNames(f.ast, "errors"), importNames(f.ast, "fmt")
		if errorsPkg == nil && fmtPkg == nil {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			var fn string
			switch {
			case pkgSelector(call.Fun, errorsPkg, "New"):
				fn = "errors.New"
			case pkgSelector(call.Fun, fmtPkg, "Errorf"):
				fn = "fmt.Errorf"
			default:
				return true
			}
			head, tail, headOK, tailOK := stringEnds(call.Args[0])
			if headOK {
				if r := firstRune(head); unicode.IsUpper(r) && !isAcronym(firstWord(head)) {
					out = append(out, tr.at(call.Args[0].Pos(), "%s string starts with a capital letter (%q); error strings are lowercase", fn, firstWord(head)))
				}
			}
			if tailOK && tail != "" {
				if c := tail[len(tail)-1]; c == '.' || c == '!' || c == '\n' {
					out = append(out, tr.at(call.Args[0].Pos(), "%s string ends with %q; error strings have no final punctuation", fn, c))
				}
			}
			return true
		})
	}
	return out
}

// stringEnds returns the beginning and end of a constant string
// expression made of literals joined with +. headOK (tailOK) is false when
// the beginning (end) is not a literal.
func stringEnds(e ast.Expr) (head, tail string, headOK, tailOK bool) {
	switch e := e.(type) {
	case *ast.ParenExpr:
		return stringEnds(e.X)
	case *ast.BasicLit:
		if e.Kind != token.STRING {
			return "", "", false, false
		}
		s, err := strconv.Unquote(e.Value)
		if err != nil {
			return "", "", false, false
		}
		return s, s, true, true
	case *ast.BinaryExpr:
		if e.Op != token.ADD {
			return "", "", false, false
		}
		head, _, headOK, _ = stringEnds(e.X)
		_, tail, _, tailOK = stringEnds(e.Y)
		return head, tail, headOK, tailOK
	}
	return "", "", false, false
}

func firstRune(s string) rune {
	for _, r := range s {
		return r
	}
	return 0
}

// firstWord returns s up to the first character that cannot be part of an
// acronym or a (dotted, qualified) identifier.
func firstWord(s string) string {
	end := strings.IndexFunc(s, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune("-_./", r)
	})
	if end < 0 {
		return s
	}
	return s[:end]
}

// isAcronym reports whether w has at least two capitals: "PCP", "UPnP",
// "NAT-PMP", "IPv4", "I/O", "AddPortMapping", but not "Failed".
func isAcronym(w string) bool {
	n := 0
	for _, r := range w {
		if unicode.IsUpper(r) {
			n++
		}
	}
	return n >= 2
}

// checkTimeNow flags every use of time.Now (calls and function values)
// outside internal/clock/, test files included: tables take now as an
// argument and services hold a clock.Clock.
func checkTimeNow(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		if strings.HasPrefix(f.path, "internal/clock/") {
			continue
		}
		timePkg := importNames(f.ast, "time")
		if timePkg == nil {
			continue
		}
		ast.Inspect(f.ast, func(n ast.Node) bool {
			if e, ok := n.(ast.Expr); ok && pkgSelector(e, timePkg, "Now") {
				out = append(out, tr.at(n.Pos(), "time.Now outside internal/clock; take a clock.Clock or a now argument"))
			}
			return true
		})
	}
	return out
}

// checkStdLog flags imports of the standard "log" package outside cmd/;
// libraries log with the *slog.Logger from their Config.
func checkStdLog(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		if strings.HasPrefix(f.path, "cmd/") {
			continue
		}
		for _, im := range f.ast.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == "log" {
				out = append(out, tr.at(im.Pos(), `imports "log" outside cmd/; use the *slog.Logger from Config`))
			}
		}
	}
	return out
}

// checkFuzzParse flags each exported top-level func Parse* in a non-test
// file that no fuzz target in its package's test files (internal or
// external test package) covers. A target covers ParseX when it is named
// FuzzParseX or when it, or a test-file function it calls, refers to ParseX.
func checkFuzzParse(tr *tree) []string {
	var out []string
	for dir, files := range byDir(tr.files) {
		var parses []*ast.FuncDecl
		testFuncs := map[string]*ast.FuncDecl{}
		var fuzz []string
		for _, f := range files {
			for _, d := range f.ast.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Recv != nil {
					continue
				}
				switch name := fd.Name.Name; {
				case !f.test && strings.HasPrefix(name, "Parse") && fd.Name.IsExported():
					parses = append(parses, fd)
				case f.test:
					testFuncs[name] = fd
					if strings.HasPrefix(name, "Fuzz") {
						fuzz = append(fuzz, name)
					}
				}
			}
		}
		if len(parses) == 0 {
			continue
		}
		covered := map[string]bool{}
		for _, name := range fuzz {
			covered[strings.TrimPrefix(name, "Fuzz")] = true
		}
		// Names reachable from the fuzz targets through test-file functions.
		seen := map[string]bool{}
		for queue := slices.Clone(fuzz); len(queue) > 0; queue = queue[1:] {
			fd := testFuncs[queue[0]]
			if seen[queue[0]] || fd == nil || fd.Body == nil {
				continue
			}
			seen[queue[0]] = true
			var visit func(ast.Node) bool
			visit = func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.SelectorExpr: // pkg.ParseX from an external test package
					if x, ok := n.X.(*ast.Ident); ok && x.Obj == nil {
						covered[n.Sel.Name] = true
					}
					ast.Inspect(n.X, visit) // not n.Sel: a field or method is no func of ours
					return false
				case *ast.Ident:
					covered[n.Name] = true
					queue = append(queue, n.Name)
				}
				return true
			}
			ast.Inspect(fd.Body, visit)
		}
		for _, fd := range parses {
			if !covered[fd.Name.Name] {
				out = append(out, tr.at(fd.Name.Pos(), "%s has no fuzz target; add a Fuzz* to %s's test files that calls it", fd.Name.Name, dir))
			}
		}
	}
	slices.Sort(out)
	return out
}

// byDir groups files by directory.
func byDir(files []*goFile) map[string][]*goFile {
	m := map[string][]*goFile{}
	for _, f := range files {
		m[f.dir] = append(m[f.dir], f)
	}
	return m
}

// checkPackageDoc flags each package (a directory with non-test Go files)
// in which no non-test file has a package doc comment.
func checkPackageDoc(tr *tree) []string {
	var out []string
	for _, files := range byDir(tr.files) {
		var first *goFile
		documented := false
		for _, f := range files {
			if f.test {
				continue
			}
			if first == nil {
				first = f
			}
			if f.ast.Doc != nil && strings.TrimSpace(f.ast.Doc.Text()) != "" {
				documented = true
			}
		}
		if first != nil && !documented {
			out = append(out, tr.at(first.ast.Package, "package %s has no doc comment (\"// Package %[1]s ...\" in one file)", first.ast.Name.Name))
		}
	}
	slices.Sort(out)
	return out
}

// README commands that must appear verbatim: the test command CI runs
// (.ci/run) and the command that starts the daemon.
var readmeCommands = []string{"go test -race ./... && (cd test/tailscale && go test -race ./...)", "go run ./cmd/berthd"}

// checkReadme flags README.md's ```toml blocks that config.Parse rejects,
// unterminated code blocks, and a missing test or run command.
func checkReadme(tr *tree) []string {
	const name = "README.md"
	text, ok := tr.other[name]
	if !ok {
		return nil
	}
	var out []string
	blocks, err := fencedBlocks(text)
	if err != nil {
		out = append(out, fmt.Sprintf("%s:%v", name, err))
	}
	for _, b := range blocks {
		if b.lang != "toml" {
			continue
		}
		// Blank lines in front make config's line numbers README's.
		data := strings.Repeat("\n", b.line) + b.text
		if _, err := config.Parse(name, []byte(data)); err != nil {
			for msg := range strings.Lines(err.Error()) {
				msg = strings.TrimSuffix(msg, "\n")
				if !findingRE.MatchString(msg) {
					msg = fmt.Sprintf("%s:%d: %s", name, b.line, strings.TrimPrefix(msg, name+": "))
				}
				out = append(out, msg+" (toml block does not load)")
			}
		}
	}
	for _, cmd := range readmeCommands {
		if !bytes.Contains(text, []byte(cmd)) {
			out = append(out, fmt.Sprintf("%s:1: does not contain the command %q", name, cmd))
		}
	}
	return out
}

type fenced struct {
	line int    // 1-based line of the opening fence
	lang string // first word of the info string
	text string // the lines between the fences
}

// fencedBlocks returns the fenced code blocks (``` or ~~~, CommonMark) of
// a Markdown text.
func fencedBlocks(text []byte) ([]fenced, error) {
	var blocks []fenced
	var open *fenced
	var fence string
	var body strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		trimmed := strings.TrimLeft(line, " ")
		if len(line)-len(trimmed) > 3 {
			trimmed = ""
		}
		if open != nil {
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]+" \t") == "" {
				open.text = body.String()
				blocks = append(blocks, *open)
				open = nil
				continue
			}
			body.WriteString(line + "\n")
			continue
		}
		for _, c := range []string{"`", "~"} {
			rest := strings.TrimLeft(trimmed, c)
			if k := len(trimmed) - len(rest); k >= 3 {
				fence = trimmed[:k]
				lang, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
				open = &fenced{line: n, lang: strings.ToLower(lang)}
				body.Reset()
				break
			}
		}
	}
	if err := sc.Err(); err != nil {
		return blocks, fmt.Errorf("1: %w", err)
	}
	if open != nil {
		return blocks, fmt.Errorf("%d: code block is never closed", open.line)
	}
	return blocks, nil
}

// File-size limits in lines. STYLE.md aims at ~600 and ~1,000; these are
// the hard limits.
const (
	maxLines     = 700
	maxTestLines = 1100
)

// checkFileSize flags non-test Go files over maxLines lines and test
// files over maxTestLines, at the first line over the limit.
func checkFileSize(tr *tree) []string {
	var out []string
	for _, f := range tr.files {
		n := bytes.Count(f.src, []byte("\n"))
		if len(f.src) > 0 && f.src[len(f.src)-1] != '\n' {
			n++
		}
		limit, kind := maxLines, "non-test"
		if f.test {
			limit, kind = maxTestLines, "test"
		}
		if n > limit {
			out = append(out, fmt.Sprintf("%s:%d: %d lines; %s files have at most %d, split it by concern", f.path, limit+1, n, kind, limit))
		}
	}
	return out
}

// TestCIRunsTheReadmeTestCommand keeps the README's promise: the test
// command it shows is the one .ci/run runs on a fresh machine.
func TestCIRunsTheReadmeTestCommand(t *testing.T) {
	ci, err := os.ReadFile(filepath.Join(repoRoot(t), ".ci", "run"))
	if err != nil {
		t.Fatal(err)
	}
	if cmd := readmeCommands[0]; !bytes.Contains(ci, []byte("\n"+cmd+"\n")) {
		t.Fatalf(".ci/run does not run the README's test command on a line of its own: %q", cmd)
	}
}
