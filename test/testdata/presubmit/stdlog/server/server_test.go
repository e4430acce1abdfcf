package server

import (
	stdlog "log"
	"testing"
)

func TestRun(t *testing.T) { stdlog.Print("no") }
