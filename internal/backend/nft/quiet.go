package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Large batches of berth's own are committed with the monitor deaf. While
// a socket listens on NFNLGRP_NFTABLES, the kernel builds an event for
// every element a transaction adds or deletes, in the commit itself, and
// the monitor's reader then parses each one only to find that berth made
// it. For the Sync of 100,000 stored mappings at start (150,000 elements
// with source-port preservation) that tripled the commit, from 0.6 s to
// 2.2 s, and overran the monitor's buffer, which cost a check reading every
// map back on top.
//
// So for a batch of quietOps changes or more the monitor leaves the group,
// the batch is committed, and the monitor joins again. The kernel's
// generation id, read before leaving and after joining, tells whether
// another process committed meanwhile: each commit adds one to it. If the
// id moved by more than berth's batch, or cannot be read, the checker
// compares the kernel with berth's state, as after an event it saw.

// quietOps is the smallest batch committed with the monitor deaf. Below
// it the events cost less than leaving and joining the group.
const quietOps = 64

// quiet runs commit, which commits one of berth's batches, with the
// monitor out of the nftables group.
func (m *monitor) quiet(commit func() error) error {
	if m == nil {
		return commit()
	}
	before, err := m.generation()
	if err != nil {
		m.log.Debug("nftables generation unreadable; committing with the monitor listening", "err", err)
		return commit()
	}
	if err := m.nl.LeaveGroup(unix.NFNLGRP_NFTABLES); err != nil {
		m.log.Debug("cannot leave the nftables group; committing with the monitor listening", "err", err)
		return commit()
	}
	cerr := commit()
	if err := m.nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		// Without the group no event arrives: say so once, loudly, and
		// let a check look at the table now.
		m.log.Error("nftables monitor cannot rejoin its group; changes by other processes will go unnoticed", "err", err)
		m.signal("nftables monitor stopped: " + err.Error())
		return cerr
	}
	after, err := m.generation()
	want := before + 1 // a refused batch is aborted and leaves the id
	if cerr != nil {
		want = before
	}
	switch {
	case err != nil:
		m.signal("nftables generation unreadable after a batch: " + err.Error())
	case after != want:
		m.signal(fmt.Sprintf("%d transaction(s) by other processes while berth committed a batch", after-want))
	}
	return cerr
}

// generation returns the kernel's nf_tables generation id (NFT_MSG_GETGEN)
// in the monitor's network namespace.
func (m *monitor) generation() (uint32, error) {
	msgs, err := m.ctl.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, err
	}
	for _, msg := range msgs {
		if msg.Header.Type != netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN) || len(msg.Data) < 4 {
			continue
		}
		if id, ok := genID(msg.Data[4:]); ok {
			return id, nil
		}
	}
	return 0, errors.New("no generation id in the kernel's answer")
}

// genID returns NFTA_GEN_ID of an NFT_MSG_NEWGEN message's attributes.
func genID(b []byte) (uint32, bool) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false
	}
	var id uint32
	ok := false
	for ad.Next() {
		if v := ad.Bytes(); ad.Type() == unix.NFTA_GEN_ID && len(v) == 4 {
			id, ok = binary.BigEndian.Uint32(v), true
		}
	}
	return id, ok && ad.Err() == nil
}
