//go:build !linux

package netif

import (
	"context"
	"errors"
	"log/slog"
)

// WatchAddrs is not available here: address changes need a restart.
func WatchAddrs(ctx context.Context, changed func(), log *slog.Logger) error {
	return errors.New("netif: watching addresses needs Linux")
}
