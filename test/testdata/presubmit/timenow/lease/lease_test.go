package lease

import (
	"testing"
	"time"
)

func TestExpired(t *testing.T) {
	if expired(time.Now().Add(time.Hour)) {
		t.Error("expired")
	}
}
