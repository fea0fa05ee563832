package store

import (
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/proto"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// How the exchange column is encoded.
const (
	encodingProto     = 0 // protobuf, as schema version 1 wrote it
	encodingZstdProto = 1 // zstd-compressed protobuf
)

// The zstd coders are safe for concurrent EncodeAll/DecodeAll. The fastest
// level and no Huffman/FSE entropy stage: ingest is CPU bound, and matches
// alone still shrink JSON bodies. On the sample checkout exchange that
// halves the encoder's CPU (~20 → ~10 µs) for 23 % larger blobs
// (1,257 → 1,543 bytes); blobs written either way decode the same.
var (
	zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithNoEntropyCompression(true))
	zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(256<<20))
)

// encodeRows derives the indexed columns of each exchange and compresses it,
// as every store writes them.
func encodeRows(exchanges []*reprisev1.Exchange) ([]row, [][]byte, error) {
	rows := make([]row, len(exchanges))
	blobs := make([][]byte, len(exchanges))
	var b []byte // the marshalled exchange, reused: EncodeAll copies it
	for i, ex := range exchanges {
		if ex.GetId() == "" {
			return nil, nil, errors.New("put exchange: empty id")
		}
		var err error
		if b, err = (proto.MarshalOptions{}).MarshalAppend(b[:0], ex); err != nil {
			return nil, nil, fmt.Errorf("marshal exchange %s: %w", ex.GetId(), err)
		}
		rows[i], blobs[i] = rowOf(ex), zstdEncoder.EncodeAll(b, nil)
	}
	return rows, blobs, nil
}

func decode(id string, enc int, b []byte) (*reprisev1.Exchange, error) {
	switch enc {
	case encodingProto:
	case encodingZstdProto:
		var err error
		if b, err = zstdDecoder.DecodeAll(b, nil); err != nil {
			return nil, fmt.Errorf("decompress exchange %s: %w", id, err)
		}
	default:
		return nil, fmt.Errorf("exchange %s: unknown encoding %d", id, enc)
	}
	ex := &reprisev1.Exchange{}
	if err := proto.Unmarshal(b, ex); err != nil {
		return nil, fmt.Errorf("unmarshal exchange %s: %w", id, err)
	}
	return ex, nil
}
