package igd

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// RootPathV1 gives the IGD:1 description to any client (COMPAT D7 option
// b), while the plain path picks by user agent.
func TestRootPathV1(t *testing.T) {
	h := newHarness(t, options{})
	get := func(path, ua string) string {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, h.base+path, nil)
		req.Header.Set("User-Agent", ua)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d", path, resp.StatusCode)
		}
		return string(b)
	}
	const goUA = "Go-http-client/1.1"
	if d := get("/rootDesc.xml", goUA); !strings.Contains(d, "InternetGatewayDevice:2") {
		t.Fatal("the plain path should give a Go client IGD:2")
	}
	if d := get(RootPathV1, goUA); !strings.Contains(d, "InternetGatewayDevice:1") || strings.Contains(d, "WANIPConnection:2") {
		t.Fatal("RootPathV1 does not give IGD:1 with WANIPConnection:1")
	}
}
