// Command tlogcheck checks Lockgate's transparency-log artefacts with independent Go
// implementations: github.com/transparency-dev/merkle (RFC 6962 proofs, compact ranges,
// a reference tree), golang.org/x/mod/sumdb/note (C2SP signed notes) and
// github.com/transparency-dev/formats (checkpoints, cosignature/v1, tlog-proof).
//
// It reads a JSON array of cases on stdin and writes a JSON array of results, one per
// case, on stdout. Byte strings are standard base64 (Go's encoding of []byte). Driven by
// tests/interop/test_tlog_go.py; it decides nothing about Lockgate beyond what the
// libraries decide.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	cplog "github.com/transparency-dev/formats/log"
	cosig "github.com/transparency-dev/formats/note"
	tlogproof "github.com/transparency-dev/formats/proof"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

type testCase struct {
	Kind        string   `json:"kind"`
	Leaf        []byte   `json:"leaf"`
	Leaves      [][]byte `json:"leaves"`
	Index       uint64   `json:"index"`
	Size        uint64   `json:"size"`
	Size1       uint64   `json:"size1"`
	Size2       uint64   `json:"size2"`
	Root        []byte   `json:"root"`
	Root1       []byte   `json:"root1"`
	Root2       []byte   `json:"root2"`
	Proof       [][]byte `json:"proof"`
	VKey        string   `json:"vkey"`
	WitnessVKey string   `json:"witness_vkey"`
	Origin      string   `json:"origin"`
	Text        string   `json:"text"`
}

type result struct {
	OK          bool                `json:"ok"`
	Error       string              `json:"error,omitempty"`
	Size        uint64              `json:"size,omitempty"`
	Index       uint64              `json:"index,omitempty"`
	Root        []byte              `json:"root,omitempty"`
	Text        string              `json:"text,omitempty"`
	Timestamp   int64               `json:"timestamp,omitempty"`
	Nodes       [][]byte            `json:"nodes,omitempty"`
	Roots       [][]byte            `json:"roots,omitempty"`
	Consistency map[string][][]byte `json:"consistency,omitempty"`
	Inclusion   map[string][][]byte `json:"inclusion,omitempty"`
}

var hasher = rfc6962.DefaultHasher

func main() {
	var cases []testCase
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		fmt.Fprintln(os.Stderr, "tlogcheck: cannot read cases:", err)
		os.Exit(2)
	}
	out := make([]result, len(cases))
	for i, c := range cases {
		r, err := run(c)
		if err != nil {
			r = result{Error: err.Error()}
		} else {
			r.OK = true
		}
		out[i] = r
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "tlogcheck:", err)
		os.Exit(2)
	}
}

func run(c testCase) (result, error) {
	switch c.Kind {
	case "inclusion":
		return result{}, proof.VerifyInclusion(hasher, c.Index, c.Size, hasher.HashLeaf(c.Leaf), c.Proof, c.Root)
	case "consistency":
		return result{}, proof.VerifyConsistency(hasher, c.Size1, c.Size2, c.Proof, c.Root1, c.Root2)
	case "compact":
		return compactRange(c.Leaves)
	case "reference":
		return reference(c.Leaves)
	case "note":
		v, err := note.NewVerifier(c.VKey)
		if err != nil {
			return result{}, err
		}
		n, err := note.Open([]byte(c.Text), note.VerifierList(v))
		if err != nil {
			return result{}, err
		}
		return result{Text: n.Text}, nil
	case "checkpoint":
		return checkpoint([]byte(c.Text), c)
	case "tlog_proof":
		var p tlogproof.TLogProof
		if err := p.Unmarshal([]byte(c.Text)); err != nil {
			return result{}, err
		}
		r, err := checkpoint(p.Checkpoint, c)
		if err != nil {
			return r, err
		}
		path := make([][]byte, len(p.Hashes))
		for i := range p.Hashes {
			path[i] = p.Hashes[i][:]
		}
		if err := proof.VerifyInclusion(hasher, p.Index, r.Size, hasher.HashLeaf(c.Leaf), path, r.Root); err != nil {
			return r, err
		}
		r.Index = p.Index
		return r, nil
	}
	return result{}, fmt.Errorf("unknown case kind %q", c.Kind)
}

// checkpoint parses a signed checkpoint with the log's verifier key and, when a witness
// key is given, requires that witness's valid cosignature/v1 on it.
func checkpoint(text []byte, c testCase) (result, error) {
	logV, err := note.NewVerifier(c.VKey)
	if err != nil {
		return result{}, err
	}
	var others []note.Verifier
	var witness note.Verifier
	if c.WitnessVKey != "" {
		witness, err = cosig.NewVerifierForCosignatureV1(c.WitnessVKey)
		if err != nil {
			return result{}, err
		}
		others = append(others, witness)
	}
	cp, _, n, err := cplog.ParseCheckpoint(text, c.Origin, logV, others...)
	if err != nil {
		return result{}, err
	}
	r := result{Size: cp.Size, Root: cp.Hash, Text: n.Text}
	if witness == nil {
		return r, nil
	}
	for _, s := range n.Sigs {
		if s.Name == witness.Name() && s.Hash == witness.KeyHash() {
			ts, err := cosig.CoSigV1Timestamp(s)
			if err != nil {
				return r, err
			}
			r.Timestamp = ts.Unix()
			return r, nil
		}
	}
	return r, errors.New("no cosignature of the witness on the checkpoint")
}

func compactRange(leaves [][]byte) (result, error) {
	rf := compact.RangeFactory{Hash: hasher.HashChildren}
	r := rf.NewEmptyRange(0)
	for _, l := range leaves {
		if err := r.Append(hasher.HashLeaf(l), nil); err != nil {
			return result{}, err
		}
	}
	root := hasher.EmptyRoot()
	if len(leaves) > 0 {
		var err error
		if root, err = r.GetRootHash(nil); err != nil {
			return result{}, err
		}
	}
	return result{Nodes: r.Hashes(), Root: root}, nil
}

// reference builds transparency-dev's reference tree over the leaves and returns, for
// every size, its root, every inclusion proof and every consistency proof.
func reference(leaves [][]byte) (result, error) {
	t := testonly.New(hasher)
	t.AppendData(leaves...)
	n := uint64(len(leaves))
	r := result{Consistency: map[string][][]byte{}, Inclusion: map[string][][]byte{}}
	for size := uint64(0); size <= n; size++ {
		r.Roots = append(r.Roots, t.HashAt(size))
		for other := uint64(0); other <= size; other++ {
			p, err := t.ConsistencyProof(other, size)
			if err != nil {
				return result{}, err
			}
			r.Consistency[key(other, size)] = p
			if other < size {
				p, err := t.InclusionProof(other, size)
				if err != nil {
					return result{}, err
				}
				r.Inclusion[key(other, size)] = p
			}
		}
	}
	return r, nil
}

func key(a, b uint64) string { return strconv.FormatUint(a, 10) + "," + strconv.FormatUint(b, 10) }
