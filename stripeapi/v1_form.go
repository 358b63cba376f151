package stripeapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Limits of the v1 form decoder.
const (
	maxFormKeyLength = 500  // bytes of one key, brackets included
	maxFormDepth     = 4    // bracket segments after the name
	maxExpandLength  = 5000 // bytes of one expand[] entry
)

// formKind is the shape of a decoded form value.
type formKind uint8

const (
	formString formKind = iota
	formHash
	formList // of strings
)

// formNode is one decoded v1 parameter: a string, a hash (from bracket
// keys a[b]=…) or a list of strings (from a[]=… or a repeated plain key).
// Lists given with indexes (expand[0]=…) decode as hashes with decimal
// keys; the readers of list parameters accept both.
type formNode struct {
	kind formKind
	str  string
	hash map[string]*formNode
	list []string
	used bool // set by the parameter readers; unused keys are unknown parameters
}

func newHash() *formNode { return &formNode{kind: formHash, hash: map[string]*formNode{}} }

// decodeForm adds the key=value pairs of raw (application/x-www-form-
// urlencoded) to root. *pairs counts the pairs decoded so far and fails the
// decoding once it exceeds maxPairs. Keys use Stripe's bracket notation:
// a[b][c]=v nests hashes, a[]=v appends to a list, and a plain key given
// twice becomes a list. Errors are *apiError values.
func decodeForm(root *formNode, raw string, pairs *int, maxPairs int) error {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if *pairs++; *pairs > maxPairs {
			return invalidRequest(http.StatusBadRequest, "", "",
				fmt.Sprintf("Too many parameters: a request may carry at most %d.", maxPairs))
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return invalidRequest(http.StatusBadRequest, "", "",
				"Invalid request: the form encoding of the parameters is malformed (bad percent escape).")
		}
		if err := checkFormUTF8(key, val); err != nil {
			return err
		}
		if err := root.insert(key, val); err != nil {
			return err
		}
	}
	return nil
}

// splitKey splits a[b][c] into a, b, c and a[] into a, "". It reports
// false for keys that are not in bracket notation.
func splitKey(k string) ([]string, bool) {
	if len(k) > maxFormKeyLength {
		return nil, false
	}
	i := strings.IndexByte(k, '[')
	if i < 0 {
		return []string{k}, k != "" && !strings.Contains(k, "]")
	}
	if i == 0 || strings.Contains(k[:i], "]") {
		return nil, false
	}
	segs := []string{k[:i]}
	for rest := k[i:]; rest != ""; {
		j := strings.IndexByte(rest, ']')
		if rest[0] != '[' || j < 0 || strings.Contains(rest[1:j], "[") {
			return nil, false
		}
		segs = append(segs, rest[1:j])
		rest = rest[j+1:]
	}
	if len(segs)-1 > maxFormDepth || slices.Contains(segs[1:len(segs)-1], "") {
		return nil, false
	}
	return segs, true
}

func bracketName(segs []string) string {
	var b strings.Builder
	b.WriteString(segs[0])
	for _, s := range segs[1:] {
		b.WriteString("[" + s + "]")
	}
	return b.String()
}

func (root *formNode) insert(key, val string) error {
	segs, ok := splitKey(key)
	if !ok {
		if len(key) > 100 {
			key = key[:100] + "…"
		}
		return errUnknownParam(key)
	}
	appendMode := segs[len(segs)-1] == ""
	if appendMode {
		segs = segs[:len(segs)-1]
	}
	cur := root
	for i, s := range segs[:len(segs)-1] {
		child := cur.hash[s]
		if child == nil {
			child = newHash()
			cur.hash[s] = child
		} else if child.kind != formHash {
			return errConflict(segs[:i+1])
		}
		cur = child
	}
	last := segs[len(segs)-1]
	switch n := cur.hash[last]; {
	case n == nil && appendMode:
		cur.hash[last] = &formNode{kind: formList, list: []string{val}}
	case n == nil:
		cur.hash[last] = &formNode{kind: formString, str: val}
	case n.kind == formString:
		n.kind, n.list, n.str = formList, []string{n.str, val}, ""
	case n.kind == formList:
		n.list = append(n.list, val)
	default:
		return errConflict(segs)
	}
	return nil
}

func errConflict(segs []string) *apiError {
	name := bracketName(segs)
	return errInvalidParam(name, fmt.Sprintf("Invalid %s: given both as a value and as a hash.", name))
}

// canonical returns a deterministic encoding of the tree: equal for
// requests whose parameters decode equally, whatever their order.
func (n *formNode) canonical() []byte {
	b, err := json.Marshal(n.plain())
	if err != nil {
		panic(fmt.Sprintf("stripeapi: encoding form parameters: %v", err)) // strings, maps and slices only
	}
	return b
}

func (n *formNode) plain() any {
	switch n.kind {
	case formString:
		return n.str
	case formList:
		return n.list
	}
	m := make(map[string]any, len(n.hash))
	for k, c := range n.hash {
		m[k] = c.plain()
	}
	return m
}

// encode writes the tree back in form encoding, hash keys sorted: the
// inverse of decodeForm.
func (n *formNode) encode() string {
	var pairs []string
	var walk func(prefix string, n *formNode)
	walk = func(prefix string, n *formNode) {
		switch n.kind {
		case formString:
			pairs = append(pairs, url.QueryEscape(prefix)+"="+url.QueryEscape(n.str))
		case formList:
			for _, v := range n.list {
				pairs = append(pairs, url.QueryEscape(prefix+"[]")+"="+url.QueryEscape(v))
			}
		case formHash:
			keys := make([]string, 0, len(n.hash))
			for k := range n.hash {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if prefix == "" {
					walk(k, n.hash[k])
				} else {
					walk(prefix+"["+k+"]", n.hash[k])
				}
			}
		}
	}
	walk("", n)
	return strings.Join(pairs, "&")
}

// v1Params reads typed parameters out of a decoded form and records the
// first problem. Every reader marks what it reads; done reports the keys
// nobody read as unknown parameters. A v1Params for a nested hash shares
// its error state with the root.
type v1Params struct {
	node   *formNode // a hash
	prefix string    // the hash's parameter name; "" for the root
	st     *paramState
}

type paramState struct {
	root *formNode
	problems
}

// problems keeps the first problem a parameter reader records; v1 and v2
// readers report it from done.
type problems struct {
	first *apiError
}

// fail records e unless an earlier problem was recorded.
func (p *problems) fail(e *apiError) {
	if p.first == nil {
		p.first = e
	}
}

// nestedName is parameter k inside prefix, in Stripe's bracket notation.
func nestedName(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "[" + k + "]"
}

func newV1Params(root *formNode) *v1Params {
	return &v1Params{node: root, st: &paramState{root: root}}
}

func (p *v1Params) name(k string) string { return nestedName(p.prefix, k) }

func (p *v1Params) fail(e *apiError) { p.st.fail(e) }

func (p *v1Params) get(k string) *formNode {
	n := p.node.hash[k]
	if n != nil {
		n.used = true
	}
	return n
}

// reject marks the subtree of n as read, so that a parameter of the wrong
// shape is reported as such rather than as unknown nested keys.
func reject(n *formNode) {
	n.used = true
	for _, c := range n.hash {
		reject(c)
	}
}

// has reports whether parameter k was given.
func (p *v1Params) has(k string) bool { return p.node.hash[k] != nil }

// str returns string parameter k, at most max bytes long. An absent or
// empty optional parameter gives "" (Stripe reads an empty value as
// "unset"); a required one is reported as missing or empty.
func (p *v1Params) str(k string, max int, required bool) string {
	n := p.get(k)
	switch {
	case n == nil:
		if required {
			p.fail(errMissingParam(p.name(k)))
		}
	case n.kind != formString:
		reject(n)
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf("Invalid %s: must be a string.", p.name(k))))
	case n.str == "" && required:
		p.fail(errInvalidEmpty(p.name(k)))
	case len(n.str) > max:
		p.fail(errTooLong(p.name(k), max))
	default:
		return n.str
	}
	return ""
}

// enum returns string parameter k, which must be one of values.
func (p *v1Params) enum(k string, required bool, values ...string) string {
	v := p.str(k, 100, required)
	if v != "" && !slices.Contains(values, v) {
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf("Invalid %s: must be one of %s.", p.name(k), strings.Join(values, ", "))))
		return ""
	}
	return v
}

// int returns integer parameter k and whether it was given.
func (p *v1Params) int(k string, required bool) (int64, bool) {
	n := p.get(k)
	switch {
	case n == nil || n.kind == formString && n.str == "" && !required:
		if required {
			p.fail(errMissingParam(p.name(k)))
		}
		return 0, false
	case n.kind != formString:
		reject(n)
		p.fail(errInvalidInteger(p.name(k), "(not a single value)"))
		return 0, false
	case n.str == "":
		p.fail(errInvalidEmpty(p.name(k)))
		return 0, false
	}
	v, err := strconv.ParseInt(n.str, 10, 64)
	if err != nil {
		p.fail(errInvalidInteger(p.name(k), n.str))
		return 0, false
	}
	return v, true
}

// hash returns a reader for hash parameter k, or nil when it is absent
// (or empty, which unsets it) or invalid.
func (p *v1Params) hash(k string, required bool) *v1Params {
	n := p.get(k)
	switch {
	case n == nil:
		if required {
			p.fail(errMissingParam(p.name(k)))
		}
		return nil
	case n.kind == formString && n.str == "":
		if required {
			p.fail(errInvalidEmpty(p.name(k)))
		}
		return nil
	case n.kind != formHash:
		p.fail(errInvalidParam(p.name(k), fmt.Sprintf("Invalid %s: must be a hash (%s[key]=value).", p.name(k), p.name(k))))
		return nil
	}
	return &v1Params{node: n, prefix: p.name(k), st: p.st}
}

// strMap returns hash parameter k as a map of strings: at most maxKeys
// entries, keys at most maxKey bytes, values at most maxValue bytes.
func (p *v1Params) strMap(k string, required bool, maxKeys, maxKey, maxValue int) map[string]string {
	h := p.hash(k, required)
	if h == nil {
		return nil
	}
	if len(h.node.hash) > maxKeys {
		reject(h.node)
		p.fail(errInvalidParam(h.prefix, fmt.Sprintf("Invalid %s: at most %d keys are allowed.", h.prefix, maxKeys)))
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
			p.fail(invalidRequest(http.StatusBadRequest, codeStringTooLong, h.prefix,
				fmt.Sprintf("Invalid %s: keys must be at most %d characters.", h.prefix, maxKey)))
		case c.kind != formString:
			p.fail(errInvalidParam(h.name(key), fmt.Sprintf("Invalid %s: must be a string.", h.name(key))))
		case len(c.str) > maxValue:
			p.fail(errTooLong(h.name(key), maxValue))
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
func (p *v1Params) expand() {
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
				p.fail(errInvalidParam("expand", "Invalid expand: must be a list of strings."))
				return
			}
			c.used = true
			items = append(items, c.str)
		}
	}
	for _, it := range items {
		if len(it) > maxExpandLength {
			p.fail(errTooLong("expand", maxExpandLength))
			return
		}
	}
}

// done returns the first unknown parameter (in sorted order) as
// parameter_unknown, else the first problem recorded by the readers, else
// nil.
func (p *v1Params) done() error {
	if name := firstUnused(p.st.root, nil); name != "" {
		return errUnknownParam(name)
	}
	if p.st.first != nil {
		return p.st.first
	}
	return nil
}

func firstUnused(n *formNode, path []string) string {
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
