package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthd/berth/internal/config"
	"github.com/berthd/berth/internal/mapping"
	"github.com/berthd/berth/internal/portmap"
	"github.com/berthd/berth/internal/store"
)

// leases is the lease store of one run, or nothing when the configuration
// switched it off.
type leases struct {
	st     *store.Store // nil when switched off
	dir    string
	loaded store.Loaded
}

// openedLeases is openLeases' outcome, from the goroutine that ran it.
type openedLeases struct {
	l   *leases
	err error
}

// openLeases opens the lease store the configuration names and reports
// what it found. A damaged store is not an error: every readable lease is
// recovered and the damage logged.
func openLeases(cfg *config.Config, log *slog.Logger) (*leases, error) {
	if !cfg.Store.Enabled {
		log.Warn("lease store switched off: a restart loses every mapping")
		return &leases{}, nil
	}
	dir := cfg.Store.Dir
	if dir == "" {
		dir = config.DefaultStoreDir()
	}
	if dir == "" {
		return nil, errors.New("daemon: lease store: no directory: set store.dir, or -state-dir none to keep no leases")
	}
	st, loaded, err := store.Open(store.Options{Dir: dir, Logger: log, Strict: cfg.Store.SyncEveryAnswer})
	if err != nil {
		return nil, fmt.Errorf("daemon: lease store in %s: %w (set store.dir, or -state-dir none to keep no leases)", dir, err)
	}
	for _, d := range loaded.Damage {
		log.Error("lease store damaged; recovered what was readable", "dir", dir, "damage", d)
	}
	if loaded.Unclean {
		log.Warn("the machine stopped while berthd ran: NAT-PMP/PCP leases of its last moments may not have reached the disk; "+
			"a new epoch tells those clients to map again", "dir", dir)
	}
	log.Info("lease store opened", "dir", dir, "leases", len(loaded.Mappings), "state_lost", loaded.Lost)
	return &leases{st: st, dir: dir, loaded: loaded}, nil
}

// service returns the Service's store and epoch settings: the epoch carries
// over only when the store lost nothing.
func (l *leases) config(c portmap.Config) portmap.Config {
	if l.st == nil {
		return c
	}
	c.Store = l.st
	if !l.loaded.Lost {
		c.EpochBase = l.loaded.EpochBase
	}
	return c
}

// restore puts the stored leases back into svc and the backend, and
// records the epoch the run uses. It returns how many leases the store
// held, restored or not (expired, refused): what it decoded. The leases
// of hosts outside every LAN prefix served now stay stored and are
// returned, for svc.Readmit when the LAN changes (RestoreKeeping).
func (l *leases) restore(ctx context.Context, svc *portmap.Service, log *slog.Logger) (int, []mapping.Mapping, error) {
	if l.st == nil {
		return 0, nil, nil
	}
	stored := len(l.loaded.Mappings)
	r, kept, err := svc.RestoreKeeping(ctx, l.loaded.Mappings)
	if err != nil {
		return 0, nil, fmt.Errorf("daemon: %w", err)
	}
	l.loaded.Mappings = nil // not needed again; let the memory go
	log.Info("leases restored", "restored", r.Restored, "expired", r.Expired, "refused", r.Refused,
		"kept_for_the_lan", r.Kept, "epoch", svc.Epoch())
	if err := l.st.Wait(ctx, l.st.SetEpochBase(svc.EpochStart())); err != nil {
		return 0, nil, fmt.Errorf("daemon: lease store: record the epoch: %w", err)
	}
	return stored, kept, nil
}

// close flushes and closes the store.
func (l *leases) close(log *slog.Logger) {
	if l.st == nil {
		return
	}
	if err := l.st.Close(); err != nil {
		log.Error("closing the lease store", "dir", l.dir, "err", err)
	}
}

// bootID is the SSDP BOOTID.UPNP.ORG of this run (UDA 1.1 §1.2.2): it
// must grow on every start, also on two starts within one second (a crash
// and a restart), so the last one is kept in the store's directory.
// Without a store it is the start time in seconds.
func (l *leases) bootID(now time.Time, log *slog.Logger) uint32 {
	id := uint32(now.Unix())
	if l.dir == "" || l.st == nil {
		return id
	}
	path := filepath.Join(l.dir, "bootid")
	if b, err := os.ReadFile(path); err == nil {
		if last, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32); err == nil && uint32(last) >= id {
			id = uint32(last) + 1
		}
	}
	tmp := path + ".tmp"
	err := os.WriteFile(tmp, []byte(strconv.FormatUint(uint64(id), 10)+"\n"), 0o600)
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		log.Warn("cannot record the SSDP BOOTID; a restart within a second may repeat it", "err", err)
	}
	return id
}
