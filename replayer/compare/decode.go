package compare

import (
	"github.com/reprise-dev/reprise/internal/contentcoding"
	"github.com/reprise-dev/reprise/internal/header"
	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// maxDecoded bounds a decoded body, so a compression bomb in recorded or
// replayed traffic cannot exhaust memory.
const maxDecoded = 64 << 20

// decodedBody returns the body with its Content-Encoding removed, or the raw
// body when it cannot be decoded; a partial body decodes as far as it goes.
func decodedBody(r *reprisev1.HttpResponse, partial bool) []byte {
	b, err := contentcoding.Decode(r.GetBody(), header.Get(r.GetHeaders(), "Content-Encoding"), maxDecoded, partial)
	if err != nil {
		return r.GetBody()
	}
	return b
}
