package form

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/meterdb/meterdb/stripeapi/internal/wire"
)

// Limits of the decoder.
const (
	MaxKeyLength    = 500  // bytes of one key, brackets included
	MaxDepth        = 4    // bracket segments after the name
	MaxExpandLength = 5000 // bytes of one expand[] entry
)

// formKind is the shape of a decoded form value.
type formKind uint8

const (
	formString formKind = iota
	formHash
	formList // of strings
)

// Node is one decoded v1 parameter: a string, a hash (from bracket
// keys a[b]=…) or a list of strings (from a[]=… or a repeated plain key).
// Lists given with indexes (expand[0]=…) decode as hashes with decimal
// keys; the readers of list parameters accept both.
type Node struct {
	kind formKind
	str  string
	hash map[string]*Node
	list []string
	used bool  // set by the parameter readers; unused keys are unknown parameters
	tree *Tree // of a Tree's root: where Decode takes the nodes it adds
}

// NewRoot returns an empty tree, the hash that Decode fills.
func NewRoot() *Node { return &Node{kind: formHash, hash: map[string]*Node{}} }

// Tree is a decoding tree whose nodes and hash maps are kept from one
// decoding to the next: a server that decodes a form per request reuses
// one Tree (through a sync.Pool, say) instead of allocating its nodes each
// time. The strings a Tree holds are the decoded ones, substrings of what
// Decode was given or fresh unescaped copies, never storage of the Tree:
// a string read from it stays valid after Reset. Nodes, Params and
// canonical forms taken from the Tree must not be used after Reset.
// The zero value is an empty tree.
type Tree struct {
	root  Node
	nodes []*Node // handed out since the last Reset (nodes[:used]), then kept for the next
	used  int
}

// Root returns the tree's root, the hash that Decode fills.
func (t *Tree) Root() *Node {
	if t.root.tree == nil {
		t.root = Node{kind: formHash, hash: map[string]*Node{}, tree: t}
	}
	return &t.root
}

// Nodes returns the number of nodes the tree holds, in use or kept: a pool
// drops the trees that a large form made large.
func (t *Tree) Nodes() int { return len(t.nodes) }

// Reset empties the tree for the next decoding and keeps its nodes and
// maps.
func (t *Tree) Reset() {
	t.root.reset()
	for _, n := range t.nodes[:t.used] {
		n.reset()
	}
	t.used = 0
}

func (n *Node) reset() {
	clear(n.hash)
	clear(n.list)
	n.kind, n.str, n.list, n.used = formHash, "", n.list[:0], false
}

// node returns an empty node of kind k: one of t's kept nodes, or a new
// one when t is nil or has none left.
func (t *Tree) node(k formKind) *Node {
	var n *Node
	switch {
	case t == nil:
		n = &Node{}
	case t.used < len(t.nodes):
		n = t.nodes[t.used]
		t.used++
	default:
		n = &Node{}
		t.nodes = append(t.nodes, n)
		t.used++
	}
	n.kind = k
	if k == formHash && n.hash == nil {
		n.hash = map[string]*Node{}
	}
	return n
}

// Decode adds the key=value pairs of raw (application/x-www-form-
// urlencoded) to root. *pairs counts the pairs decoded so far and fails the
// decoding once it exceeds maxPairs. Keys use Stripe's bracket notation:
// a[b][c]=v nests hashes, a[]=v appends to a list, and a plain key given
// twice becomes a list. Errors are *wire.Error values.
func Decode(root *Node, raw string, pairs *int, maxPairs int) error {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" {
			continue
		}
		if *pairs++; *pairs > maxPairs {
			return wire.InvalidRequest(http.StatusBadRequest, "", "",
				fmt.Sprintf("Too many parameters: a request may carry at most %d.", maxPairs))
		}
		k, v, _ := strings.Cut(pair, "=")
		key, err1 := url.QueryUnescape(k)
		val, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			return wire.InvalidRequest(http.StatusBadRequest, "", "",
				"Invalid request: the form encoding of the parameters is malformed (bad percent escape).")
		}
		if err := checkUTF8(key, val); err != nil {
			return err
		}
		if err := root.insert(key, val); err != nil {
			return err
		}
	}
	return nil
}

// splitKey splits a[b][c] into a, b, c and a[] into a, "", appended to
// segs. It reports false for keys that are not in bracket notation.
func splitKey(k string, segs []string) ([]string, bool) {
	if len(k) > MaxKeyLength {
		return nil, false
	}
	i := strings.IndexByte(k, '[')
	if i < 0 {
		return append(segs, k), k != "" && !strings.Contains(k, "]")
	}
	if i == 0 || strings.Contains(k[:i], "]") {
		return nil, false
	}
	segs = append(segs, k[:i])
	for rest := k[i:]; rest != ""; {
		j := strings.IndexByte(rest, ']')
		if rest[0] != '[' || j < 0 || strings.Contains(rest[1:j], "[") {
			return nil, false
		}
		segs = append(segs, rest[1:j])
		rest = rest[j+1:]
	}
	if len(segs)-1 > MaxDepth || slices.Contains(segs[1:len(segs)-1], "") {
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

func (root *Node) insert(key, val string) error {
	var buf [MaxDepth + 2]string // the name, MaxDepth segments and a trailing []
	segs, ok := splitKey(key, buf[:0])
	if !ok {
		if len(key) > 100 {
			key = key[:100] + "…"
		}
		return wire.ErrUnknownParam(key)
	}
	appendMode := segs[len(segs)-1] == ""
	if appendMode {
		segs = segs[:len(segs)-1]
	}
	cur, t := root, root.tree
	for i, s := range segs[:len(segs)-1] {
		child := cur.hash[s]
		if child == nil {
			child = t.node(formHash)
			cur.hash[s] = child
		} else if child.kind != formHash {
			return errConflict(segs[:i+1])
		}
		cur = child
	}
	last := segs[len(segs)-1]
	switch n := cur.hash[last]; {
	case n == nil && appendMode:
		n = t.node(formList)
		n.list = append(n.list, val)
		cur.hash[last] = n
	case n == nil:
		n = t.node(formString)
		n.str = val
		cur.hash[last] = n
	case n.kind == formString:
		n.kind, n.list, n.str = formList, append(n.list[:0], n.str, val), ""
	case n.kind == formList:
		n.list = append(n.list, val)
	default:
		return errConflict(segs)
	}
	return nil
}

func errConflict(segs []string) *wire.Error {
	name := bracketName(segs)
	return wire.ErrInvalidParam(name, fmt.Sprintf("Invalid %s: given both as a value and as a hash.", name))
}

// canonical returns a deterministic encoding of the tree: equal for
// requests whose parameters decode equally, whatever their order.
func (n *Node) Canonical() []byte {
	b, err := json.Marshal(n.plain())
	if err != nil {
		panic(fmt.Sprintf("stripeapi: encoding form parameters: %v", err)) // strings, maps and slices only
	}
	return b
}

func (n *Node) plain() any {
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
// inverse of Decode.
func (n *Node) Encode() string {
	var pairs []string
	var walk func(prefix string, n *Node)
	walk = func(prefix string, n *Node) {
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

// checkUTF8 checks one decoded pair: key names the parameter.
func checkUTF8(key, val string) *wire.Error {
	if !utf8.ValidString(key) || !utf8.ValidString(val) {
		return wire.ErrInvalidUTF8(key)
	}
	return nil
}
