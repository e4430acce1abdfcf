// Package server is a presubmit fixture: the log package outside cmd/.
package server

import (
	"log"
	"log/slog"
)

func run(l *slog.Logger) { log.Print("no"); l.Info("yes") }
