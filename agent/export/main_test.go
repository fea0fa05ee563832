package export

import (
	"testing"

	"github.com/reprise-dev/reprise/internal/s2compress"
	"github.com/reprise-dev/reprise/internal/wirecodec"
)

// The tests run with what the agent's and the collector's main register:
// the codec, and S2 on both ends of the test streams.
func TestMain(m *testing.M) {
	wirecodec.Register()
	s2compress.Register()
	m.Run()
}
