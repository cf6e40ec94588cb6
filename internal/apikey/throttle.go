package apikey

import (
	"math"
	"net/netip"
	"sync"
	"time"
)

// Default throttle of the exchange endpoint (README "API keys").
const (
	DefaultExchangesPerMinute = 30 // per source address
	DefaultFailuresPerKeyHour = 10 // wrong secrets naming one key prefix
)

const (
	maxThrottleEntries         = 100_000
	throttleSweepEveryEntries  = 10_000
	throttleMinimumRetryAfter  = time.Second
	throttleAddressWindow      = time.Minute
	throttleKeyFailuresWindow  = time.Hour
	throttleIPv6AggregateBits  = 64
	throttleDefaultUnknownAddr = "unknown"
)

// Throttle slows down guessing on POST /auth/token. Two token buckets:
//   - per source address, every exchange (PerAddress a minute, in bursts of as many): one client
//     cannot try keys, or hammer the database, faster than that;
//   - per key prefix, every failed exchange with a wrong secret (FailuresPerKey an hour): a
//     known prefix (listings show it) cannot be attacked from many addresses at once. While a
//     prefix's bucket is empty, exchanges naming it are refused without being checked, the
//     right secret included; an attacker who knows a prefix can therefore hold that key's
//     exchanges back, never learn anything about its secret (which, at 256 random bits, no
//     number of guesses would find anyway).
//
// Counts live in the process: each replica throttles on its own (N replicas allow N times the
// rate). Addresses are IPv4 addresses or IPv6 /64 networks. Memory is bounded: buckets back to
// full are dropped, and past maxThrottleEntries all counts start afresh.
type Throttle struct {
	PerAddress     int // exchanges per minute per address; 0: DefaultExchangesPerMinute
	FailuresPerKey int // failed exchanges per hour per key prefix; 0: DefaultFailuresPerKeyHour
	Now            func() time.Time

	once       sync.Once
	addr, keys *buckets
}

func (t *Throttle) init() {
	t.once.Do(func() {
		per, fail := t.PerAddress, t.FailuresPerKey
		if per <= 0 {
			per = DefaultExchangesPerMinute
		}
		if fail <= 0 {
			fail = DefaultFailuresPerKeyHour
		}
		t.addr = newBuckets(per, throttleAddressWindow)
		t.keys = newBuckets(fail, throttleKeyFailuresWindow)
	})
}

func (t *Throttle) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Admit counts one exchange from addr naming prefix ("" when the key was malformed) and reports
// whether it may be tried; when not, how long the caller should wait.
func (t *Throttle) Admit(addr netip.Addr, prefix string) (ok bool, retryAfter time.Duration) {
	t.init()
	now := t.now()
	if ok, wait := t.addr.take(addressKey(addr), now); !ok {
		return false, wait
	}
	if prefix != "" {
		if ok, wait := t.keys.check(prefix, now); !ok {
			return false, wait
		}
	}
	return true, 0
}

// Failed records an exchange that named prefix with a wrong secret.
func (t *Throttle) Failed(prefix string) {
	t.init()
	if prefix != "" {
		t.keys.take(prefix, t.now())
	}
}

func addressKey(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return throttleDefaultUnknownAddr
	case a.Is4() || a.Is4In6():
		return a.Unmap().String()
	}
	p, _ := a.Prefix(throttleIPv6AggregateBits)
	return p.String()
}

// buckets are token buckets of one capacity, refilled evenly over window.
type buckets struct {
	mu       sync.Mutex
	capacity float64
	rate     float64 // tokens per second
	m        map[string]*bucket
	added    int
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newBuckets(capacity int, window time.Duration) *buckets {
	return &buckets{capacity: float64(capacity), rate: float64(capacity) / window.Seconds(), m: map[string]*bucket{}}
}

// level returns key's bucket refilled up to now (a new one is full).
func (b *buckets) level(key string, now time.Time) *bucket {
	k := b.m[key]
	if k == nil {
		b.added++
		if b.added%throttleSweepEveryEntries == 0 || len(b.m) >= maxThrottleEntries {
			b.sweep(now)
		}
		k = &bucket{tokens: b.capacity, at: now}
		b.m[key] = k
		return k
	}
	if elapsed := now.Sub(k.at).Seconds(); elapsed > 0 {
		k.tokens = math.Min(b.capacity, k.tokens+elapsed*b.rate)
		k.at = now
	}
	return k
}

// sweep drops buckets that are full again; if that is not enough, all of them.
func (b *buckets) sweep(now time.Time) {
	for key, k := range b.m {
		if k.tokens+now.Sub(k.at).Seconds()*b.rate >= b.capacity {
			delete(b.m, key)
		}
	}
	if len(b.m) >= maxThrottleEntries {
		clear(b.m)
	}
}

func (b *buckets) wait(k *bucket) time.Duration {
	secs := math.Ceil((1 - k.tokens) / b.rate) // whole seconds, as Retry-After carries them
	return max(time.Duration(secs)*time.Second, throttleMinimumRetryAfter)
}

func (b *buckets) take(key string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.level(key, now)
	if k.tokens < 1 {
		return false, b.wait(k)
	}
	k.tokens--
	return true, 0
}

func (b *buckets) check(key string, now time.Time) (bool, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.level(key, now)
	if k.tokens < 1 {
		return false, b.wait(k)
	}
	return true, 0
}
