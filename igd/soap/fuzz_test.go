package soap

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzReadAction: ReadAction never panics, a decoded action has a name, and
// the response built from any decoded action is well-formed XML. Seeds are
// the request corpus.
func FuzzReadAction(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.txt")
	for _, p := range files {
		c := readCorpus(f, p)
		f.Add(c.body, c.soapAction)
	}
	raw, _ := os.ReadFile("testdata/requests/miniupnpc-addportmapping.txt")
	f.Add(raw, "")
	f.Fuzz(func(t *testing.T, body []byte, soapAction string) {
		checkFastPath(t, body)
		a, err := ReadAction(bytes.NewReader(body), soapAction)
		if err != nil {
			return
		}
		if a.Name == "" {
			t.Fatalf("empty action name from %q", body)
		}
		out := make([]Arg, 0, len(a.ArgOrder))
		for _, n := range a.ArgOrder {
			if n == "" {
				t.Fatalf("empty argument name from %q", body)
			}
			out = append(out, Arg{Name: n, Value: a.Args[n]}, Arg{Name: n, Value: a.Args[n], CDATA: true})
		}
		var b bytes.Buffer
		if err := WriteResponse(&b, a.Namespace, a.Name, out); err != nil {
			t.Fatal(err)
		}
		checkWellFormed(t, b.Bytes())
	})
}

// checkFastPath: wherever the fast tokenizer reads a body to the end of
// its action, decodeBody's result is the one encoding/xml gives.
func checkFastPath(t *testing.T, body []byte) {
	t.Helper()
	in := prepare(body)
	fa, ffound, ferr := decodeTokens(newFastTokens(in).next)
	if ferr == errFallback {
		return
	}
	sa, sfound, serr := decodeTokens(slowTokens(in))
	if ffound != sfound || (ferr == nil) != (serr == nil) || !reflect.DeepEqual(fa, sa) {
		t.Fatalf("body %q:\nfast: %+v found %v err %v\nxml:  %+v found %v err %v", in, fa, ffound, ferr, sa, sfound, serr)
	}
}
