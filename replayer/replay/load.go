package replay

import (
	"fmt"
	"math"
	"time"

	reprisev1 "github.com/reprise-dev/reprise/proto/reprise/v1"
)

// Model is how the replay paces its requests.
type Model int

const (
	// Fastest sends as fast as Workers requests in flight allow (a closed
	// model: a new request starts when one ends).
	Fastest Model = iota
	// Recorded keeps the recorded gaps between requests, divided by Speed,
	// each gap capped at MaxGap.
	Recorded
	// Rate starts requests at a constant rate, or one ramping from RateFrom
	// to RateTo over Ramp, whatever the latency (an open model, as vegeta
	// and k6 do).
	Rate
)

// Load configures the pacing of a run.
type Load struct {
	Model Model
	// Workers bounds the requests in flight of the Fastest model.
	Workers int
	Speed   float64
	// MaxGap caps one recorded gap; 0 keeps gaps as recorded.
	MaxGap time.Duration
	// RateFrom and RateTo are in requests per second; equal for a constant
	// rate.
	RateFrom, RateTo float64
	Ramp             time.Duration
	// MaxInFlight bounds the requests in flight of the open models; a
	// request due when the bound is reached is dropped and reported.
	MaxInFlight int
}

// DefaultMaxInFlight bounds the open models' requests in flight.
const DefaultMaxInFlight = 10000

// LateThreshold is how far behind its schedule a send must start to count
// as late: below it, the lag is the timer's and the scheduler's own jitter.
const LateThreshold = 10 * time.Millisecond

func (l Load) validate() error {
	switch l.Model {
	case Fastest:
		if l.Workers <= 0 {
			return fmt.Errorf("workers must be positive, got %d", l.Workers)
		}
		return nil
	case Recorded:
		if !(l.Speed > 0) || math.IsInf(l.Speed, 0) {
			return fmt.Errorf("speed must be a positive number, got %v", l.Speed)
		}
		if l.MaxGap < 0 {
			return fmt.Errorf("max gap must not be negative, got %s", l.MaxGap)
		}
	case Rate:
		if !(l.RateFrom >= 0) || !(l.RateTo > 0) || math.IsInf(l.RateFrom, 0) || math.IsInf(l.RateTo, 0) {
			return fmt.Errorf("rates must be positive (the start of a ramp may be 0), got %v to %v", l.RateFrom, l.RateTo)
		}
		if l.RateFrom != l.RateTo && l.Ramp <= 0 {
			return fmt.Errorf("a ramp from %v to %v req/s needs a positive duration", l.RateFrom, l.RateTo)
		}
		if l.RateFrom == 0 && l.Ramp <= 0 {
			return fmt.Errorf("rate must be positive, got %v", l.RateFrom)
		}
	default:
		return fmt.Errorf("unknown load model %d", l.Model)
	}
	if l.MaxInFlight <= 0 {
		return fmt.Errorf("max in flight must be positive, got %d", l.MaxInFlight)
	}
	return nil
}

// schedule gives each request its start offset from the beginning of the
// run; ok is false for the Fastest model, which has no schedule.
type schedule struct {
	load  Load
	n     int           // requests scheduled so far
	first time.Time     // recorded start of the first exchange
	prev  time.Time     // recorded start of the previous exchange
	at    time.Duration // offset of the previous request
}

func (s *schedule) next(ex *reprisev1.Exchange) (at time.Duration, ok bool) {
	defer func() { s.n++ }()
	switch s.load.Model {
	case Recorded:
		start := ex.GetStartTime().AsTime()
		if s.n == 0 {
			s.prev = start
			return 0, true
		}
		// Out-of-order starts (a hand-made file) replay at once.
		gap := time.Duration(float64(max(start.Sub(s.prev), 0)) / s.load.Speed)
		if s.load.MaxGap > 0 {
			gap = min(gap, s.load.MaxGap)
		}
		s.prev = start
		s.at += gap
		return s.at, true
	case Rate:
		return rateOffset(s.load, float64(s.n)), true
	}
	return 0, false
}

// rateOffset is when the n-th request (from 0) is due: the time at which
// the integral of the rate reaches n. With the rate ramping linearly by k
// per second, n = from·t + k·t²/2 up to the end of the ramp.
func rateOffset(l Load, n float64) time.Duration {
	from, to, ramp := l.RateFrom, l.RateTo, l.Ramp.Seconds()
	if from == to || ramp <= 0 {
		return seconds(n / to)
	}
	k := (to - from) / ramp
	inRamp := from*ramp + k*ramp*ramp/2
	if n <= inRamp {
		return seconds((-from + math.Sqrt(from*from+2*k*n)) / k)
	}
	return seconds(ramp + (n-inRamp)/to)
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
