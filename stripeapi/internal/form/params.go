package form

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// Params reads typed parameters out of a decoded form and records the
// first problem. Every reader marks what it reads; Done reports the keys
// nobody read as unknown parameters (see Done). A Params for a nested hash shares
// its error state with the root.
type Params struct {
	node   *Node  // a hash
	prefix string // the hash's parameter name; "" for the root
	st     *paramState
}

type paramState struct {
	root *Node
	wire.Problems
}

// NewParams returns a reader of the parameters decoded into root.
func NewParams(root *Node) *Params {
	return &Params{node: root, st: &paramState{root: root}}
}

// Name is parameter k of this hash, in bracket notation.
func (p *Params) Name(k string) string { return wire.NestedName(p.prefix, k) }

// Fail records e unless an earlier problem was recorded.
func (p *Params) Fail(e *wire.Error) { p.st.Fail(e) }

func (p *Params) get(k string) *Node {
	n := p.node.hash[k]
	if n != nil {
		n.used = true
	}
	return n
}

// reject marks the subtree of n as read, so that a parameter of the wrong
// shape is reported as such rather than as unknown nested keys.
func reject(n *Node) {
	n.used = true
	for _, c := range n.hash {
		reject(c)
	}
}

// has reports whether parameter k was given.
func (p *Params) Has(k string) bool { return p.node.hash[k] != nil }

// str returns string parameter k, at most max bytes long. An absent or
// empty optional parameter gives "" (Stripe reads an empty value as
// "unset"); a required one is reported as missing or empty.
func (p *Params) Str(k string, max int, required bool) string {
	n := p.get(k)
	switch {
	case n == nil:
		if required {
			p.Fail(wire.ErrMissingParam(p.Name(k)))
		}
	case n.kind != formString:
		reject(n)
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf("Invalid %s: must be a string.", p.Name(k))))
	case n.str == "" && required:
		p.Fail(wire.ErrInvalidEmpty(p.Name(k)))
	case len(n.str) > max:
		p.Fail(wire.ErrTooLong(p.Name(k), max))
	default:
		return n.str
	}
	return ""
}

// enum returns string parameter k, which must be one of values.
func (p *Params) Enum(k string, required bool, values ...string) string {
	v := p.Str(k, 100, required)
	if v != "" && !slices.Contains(values, v) {
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf("Invalid %s: must be one of %s.", p.Name(k), strings.Join(values, ", "))))
		return ""
	}
	return v
}

// int returns integer parameter k and whether it was given.
func (p *Params) Int(k string, required bool) (int64, bool) {
	n := p.get(k)
	switch {
	case n == nil || n.kind == formString && n.str == "" && !required:
		if required {
			p.Fail(wire.ErrMissingParam(p.Name(k)))
		}
		return 0, false
	case n.kind != formString:
		reject(n)
		p.Fail(wire.ErrInvalidInteger(p.Name(k), "(not a single value)"))
		return 0, false
	case n.str == "":
		p.Fail(wire.ErrInvalidEmpty(p.Name(k)))
		return 0, false
	}
	v, err := strconv.ParseInt(n.str, 10, 64)
	if err != nil {
		p.Fail(wire.ErrInvalidInteger(p.Name(k), n.str))
		return 0, false
	}
	return v, true
}

// hash returns a reader for hash parameter k, or nil when it is absent
// (or empty, which unsets it) or invalid.
func (p *Params) Hash(k string, required bool) *Params {
	n := p.get(k)
	switch {
	case n == nil:
		if required {
			p.Fail(wire.ErrMissingParam(p.Name(k)))
		}
		return nil
	case n.kind == formString && n.str == "":
		if required {
			p.Fail(wire.ErrInvalidEmpty(p.Name(k)))
		}
		return nil
	case n.kind != formHash:
		p.Fail(wire.ErrInvalidParam(p.Name(k), fmt.Sprintf("Invalid %s: must be a hash (%s[key]=value).", p.Name(k), p.Name(k))))
		return nil
	}
	return &Params{node: n, prefix: p.Name(k), st: p.st}
}

// strMap returns hash parameter k as a map of strings: at most maxKeys
// entries, keys at most maxKey bytes, values at most maxValue bytes.
func (p *Params) StrMap(k string, required bool, maxKeys, maxKey, maxValue int) map[string]string {
	h := p.Hash(k, required)
	if h == nil {
		return nil
	}
	if len(h.node.hash) > maxKeys {
		reject(h.node)
		p.Fail(wire.ErrInvalidParam(h.prefix, fmt.Sprintf("Invalid %s: at most %d keys are allowed.", h.prefix, maxKeys)))
		return nil
	}
	keys := make([]string, 0, len(h.node.hash))
	for key := range h.node.hash {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys { // every entry is read, so that none is reported unknown
		reject(h.node.hash[key])
	}
	m := make(map[string]string, len(keys))
	for _, key := range keys {
		c := h.node.hash[key]
		switch {
		case len(key) > maxKey:
			p.Fail(wire.InvalidRequest(http.StatusBadRequest, wire.CodeStringTooLong, h.prefix,
				fmt.Sprintf("Invalid %s: keys must be at most %d characters.", h.prefix, maxKey)))
		case c.kind != formString:
			p.Fail(wire.ErrInvalidParam(h.Name(key), fmt.Sprintf("Invalid %s: must be a string.", h.Name(key))))
		case len(c.str) > maxValue:
			p.Fail(wire.ErrTooLong(h.Name(key), maxValue))
		default:
			m[key] = c.str
			continue
		}
		return nil
	}
	return m
}

// expand reads and discards the expand parameter: a list of strings given
// as expand[]=…, expand[0]=… or repeated expand=…. Nothing on these
// objects expands to another resource.
func (p *Params) Expand() {
	n := p.get("expand")
	if n == nil {
		return
	}
	var items []string
	switch n.kind {
	case formString:
		items = []string{n.str}
	case formList:
		items = n.list
	case formHash:
		for k, c := range n.hash {
			if _, err := strconv.ParseUint(k, 10, 32); err != nil || c.kind != formString {
				reject(n)
				p.Fail(wire.ErrInvalidParam("expand", "Invalid expand: must be a list of strings."))
				return
			}
			c.used = true
			items = append(items, c.str)
		}
	}
	for _, it := range items {
		if len(it) > MaxExpandLength {
			p.Fail(wire.ErrTooLong("expand", MaxExpandLength))
			return
		}
	}
}

// StringList reads list parameter k given as k[]=…, k[0]=… (in index
// order) or repeated k=…; an empty k= is an empty list.
func (p *Params) StringList(k string) []string {
	n := p.get(k)
	if n == nil {
		return nil
	}
	switch n.kind {
	case formString:
		if n.str == "" {
			return nil
		}
		return []string{n.str}
	case formList:
		return n.list
	}
	type item struct {
		i int
		s string
	}
	items := make([]item, 0, len(n.hash))
	for key, c := range n.hash {
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || c.kind != formString {
			reject(n)
			p.Fail(wire.ErrInvalidParam(k, "Invalid "+k+": must be a list of strings."))
			return nil
		}
		c.used = true
		items = append(items, item{i, c.str})
	}
	slices.SortFunc(items, func(a, b item) int { return a.i - b.i })
	out := make([]string, len(items))
	for j, it := range items {
		out[j] = it.s
	}
	return out
}

// Done returns the first unknown parameter (in sorted order) as
// parameter_unknown, else the first problem recorded by the readers, else
// nil.
func (p *Params) Done() error {
	if anyUnused(p.st.root) {
		return wire.ErrUnknownParam(firstUnused(p.st.root, nil))
	}
	if p.st.First != nil {
		return p.st.First
	}
	return nil
}

// anyUnused reports whether a key under n was not read: the common
// answer, no, without sorting or allocating.
func anyUnused(n *Node) bool {
	for _, c := range n.hash {
		if !c.used || c.kind == formHash && anyUnused(c) {
			return true
		}
	}
	return false
}

// firstUnused returns the bracket name of the first key under n, in sorted
// order, that was not read, or "".
func firstUnused(n *Node, path []string) string {
	keys := make([]string, 0, len(n.hash))
	for k := range n.hash {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := n.hash[k]
		seg := append(path, k)
		if !c.used {
			return bracketName(seg)
		}
		if c.kind == formHash {
			if name := firstUnused(c, seg); name != "" {
				return name
			}
		}
	}
	return ""
}
