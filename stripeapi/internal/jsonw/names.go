package jsonw

import "sync"

// Names interns event names: a stream carries the same few names over
// and over. It is safe for concurrent use and bounded.
type Names struct {
	mu sync.RWMutex // guards m
	m  map[string]string
}

const maxNames = 1024

// NewNames returns an empty cache.
func NewNames() *Names { return &Names{m: map[string]string{}} }

func (n *Names) intern(b []byte) string {
	n.mu.RLock()
	s, ok := n.m[string(b)]
	n.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	n.mu.Lock()
	if len(n.m) < maxNames {
		n.m[s] = s
	}
	n.mu.Unlock()
	return s
}
