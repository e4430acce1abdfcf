package netif

// Counters are an interface's traffic counters since the kernel created
// it, as the kernel keeps them: 64-bit, never reset by berth.
type Counters struct {
	BytesSent, BytesReceived, PacketsSent, PacketsReceived uint64
}

// ReadCounters returns the counters of the interface named name: what the
// UPnP GetTotal* actions report for the WAN (COMPAT R8). An interface that
// is gone (a PPP link that went down) is an error naming it.
func ReadCounters(name string) (Counters, error) { return readCounters(name) }
