package listener

import (
	"net/netip"
	"time"

	"github.com/berthd/berth/pcp"
)

// Announce sends the unsolicited announcements now and then 9 more times,
// 250 ms apart and doubling (RFC 6886 §3.2.1, RFC 6887 §14.1.3). Call it
// at start and whenever the external address changes or state was lost;
// a new call restarts the schedule.
func (s *Server) Announce() {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.closed.Load() {
		return
	}
	s.restartLocked()
}

// restartLocked starts a new announcement series. Called with amu held.
func (s *Server) restartLocked() {
	if s.aStop != nil {
		s.aStop()
	}
	s.aGen++
	s.aRemain, s.aInterval = 10, 250*time.Millisecond
	s.announceLocked()
}

func (s *Server) announceLocked() {
	s.sendAnnouncements()
	s.aRemain--
	if s.aRemain <= 0 {
		s.aStop = nil
		return
	}
	d := s.aInterval
	s.aInterval *= 2
	gen := s.aGen
	s.aStop = s.cfg.Clock.AfterFunc(d, func() {
		s.amu.Lock()
		defer s.amu.Unlock()
		// A series replaced by a newer Announce while this timer had
		// already fired must not run on beside it.
		if !s.closed.Load() && gen == s.aGen {
			s.announceLocked()
		}
	})
}

func (s *Server) sendAnnouncements() {
	var epoch uint32
	if s.cfg.Epoch != nil {
		epoch = s.cfg.Epoch()
	}
	var pmp []byte
	if s.cfg.NATPMP != nil && s.cfg.NATPMPAnnouncement != nil {
		pmp = s.cfg.NATPMPAnnouncement(epoch)
	}
	var pcpA []byte
	if s.cfg.PCP != nil {
		pcpA = pcp.Announce(epoch).AppendTo(nil)
	}
	for _, k := range s.socks {
		if !k.bind.Virtual && s.virtualIf[keyOf(k.bind)] {
			continue // the virtual address stands for the router here
		}
		if k.bind.Addr.Is4() {
			if !k.mcastOK && k.bind.Interface != "" {
				continue // it could leave through the WAN
			}
			for i, port := range s.cfg.AnnouncePorts {
				dst := netip.AddrPortFrom(s.cfg.AnnounceGroup4, port)
				s.send(k, pmp, dst)
				if i == 0 {
					s.send(k, pcpA, dst) // PCP clients listen on 5350 only
				}
			}
			continue
		}
		group := s.cfg.AnnounceGroup6
		if group.IsLinkLocalMulticast() && k.bind.Interface != "" {
			group = group.WithZone(k.bind.Interface)
		}
		s.send(k, pcpA, netip.AddrPortFrom(group, s.cfg.AnnouncePorts[0]))
	}
}

// send sends one announcement from k's socket, or hands it to
// writeAnnouncement when a test set that.
func (s *Server) send(k *sock, payload []byte, dst netip.AddrPort) {
	if payload == nil {
		return
	}
	var err error
	if s.writeAnnouncement != nil {
		err = s.writeAnnouncement(k.bind, payload, dst)
	} else {
		_, err = k.conn.WriteToUDPAddrPort(payload, dst)
	}
	if err != nil {
		s.log.Debug("announcement not sent", "from", k.conn.LocalAddr(), "to", dst, "err", err)
	}
}
