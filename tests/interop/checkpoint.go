// Command checkpoint checks nocontact's signed checkpoints and Merkle proofs with Go's
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog: an implementation that
// shares no code with nocontact's own (tests/test_go_interop.py runs it).
//
// Rules this program keeps:
//  1. Every signature is checked by note.Open against the archive's verifier key alone
//     (note.NewVerifier of the C2SP vkey in signing.pub); every tree by tlog.ParseTree;
//     every leaf by tlog.RecordHash of the record bytes kind || index (8 bytes,
//     big-endian) || SHA-256(body) in an archive of format version 3 (the 41-byte
//     tlog-tiles entry), or kind || index || body in versions 1 and 2 (the version is
//     the case's "format_version", a bundle manifest's archive.format_version, which a
//     bundle made before version 3 leaves out: version 2); every inclusion proof by tlog.CheckRecord and every
//     consistency proof by tlog.CheckTree. Nothing is hashed or verified by hand.
//  2. tlog.ParseTree knows one origin only, the go.sum log's "go.sum database tree": it
//     rejects any other first line. A C2SP checkpoint's first line is its log's origin,
//     so the origin is checked here to be the verifier key's name, and the lines after it
//     (size, base64 root, extension lines) go to tlog.ParseTree under the go.sum origin.
//     The program says so in its output every time it does this.
//  3. One line per check, "ok: ..." or "FAIL: ...", then "verdict: accepted" (exit 0) or
//     "verdict: rejected" (exit 1). Input it cannot read is "error: ..." (exit 2).
//
// Usage (offline, with Debian's golang-golang-x-mod-dev):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run checkpoint.go CASE.json
//	GO111MODULE=off GOPATH=/usr/share/gocode go run checkpoint.go -bundle DIR
//
// CASE.json: {"verifier_key": vkey, "format_version": 1 | 2 | 3, "checkpoints": [signed note, ...] (ascending sizes),
// "consistency": [[hex hash, ...], ...] (proof i: checkpoint i is a prefix of i+1),
// "records": [{"checkpoint": i, "kind": k, "index": n, "body": base64, "proof": [hex]}]}.
// DIR is an unzipped evidence bundle: its manifest.json's checkpoint, verifier key and
// each item's inclusion proof, with the item's sealed/ file as the entry body.
package main

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const goSumOrigin = "go.sum database tree"

// sealedKind is the archive's entry kind of a held item or custody record (records.py).
const sealedKind = 1

type record struct {
	Checkpoint int      `json:"checkpoint"`
	Kind       int      `json:"kind"`
	Index      int64    `json:"index"`
	Body       []byte   `json:"body"`
	Proof      []string `json:"proof"`
}

type checkCase struct {
	VerifierKey   string     `json:"verifier_key"`
	FormatVersion int        `json:"format_version"`
	Checkpoints   []string   `json:"checkpoints"`
	Consistency   [][]string `json:"consistency"`
	Records       []record   `json:"records"`
}

type bundleFile struct {
	Name string `json:"name"`
}

type bundleItem struct {
	Bates          string     `json:"bates"`
	LeafIndex      int64      `json:"leaf_index"`
	LeafHash       string     `json:"leaf_hash"`
	InclusionProof []string   `json:"inclusion_proof"`
	Sealed         bundleFile `json:"sealed"`
}

type bundleManifest struct {
	Archive struct {
		FormatVersion *int   `json:"format_version"`
		VerifierKey   string `json:"verifier_key"`
		Checkpoint    string `json:"checkpoint"`
		TreeSize      int64  `json:"tree_size"`
		RootHash      string `json:"root_hash"`
	} `json:"archive"`
	Items []bundleItem `json:"items"`
}

// checker prints one line per check and remembers whether any failed.
type checker struct{ failed bool }

func (c *checker) result(what string, err error) bool {
	if err != nil {
		c.failed = true
		fmt.Printf("FAIL: %s: %v\n", what, err)
		return false
	}
	fmt.Printf("ok: %s\n", what)
	return true
}

func fatal(format string, args ...any) {
	fmt.Printf("error: "+format+"\n", args...)
	os.Exit(2)
}

// openCheckpoint checks the note's signature and reads its tree (rules 1 and 2).
func openCheckpoint(text string, verifier note.Verifier) (tlog.Tree, error) {
	opened, err := note.Open([]byte(text), note.VerifierList(verifier))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("note.Open: %w", err)
	}
	origin, rest, _ := strings.Cut(opened.Text, "\n")
	if origin != verifier.Name() {
		return tlog.Tree{}, fmt.Errorf("origin %q is not the key's name %q", origin, verifier.Name())
	}
	tree, err := tlog.ParseTree([]byte(opened.Text))
	if err == nil {
		return tree, nil
	}
	fmt.Printf("note: tlog.ParseTree rejects origin %q (%v); it accepts only %q, "+
		"so the origin was checked against the key name and the rest parsed under %q\n",
		origin, err, goSumOrigin, goSumOrigin)
	tree, err = tlog.ParseTree([]byte(goSumOrigin + "\n" + rest))
	if err != nil {
		return tlog.Tree{}, fmt.Errorf("tlog.ParseTree: %w", err)
	}
	return tree, nil
}

func parseHashes(texts []string) ([]tlog.Hash, error) {
	hashes := make([]tlog.Hash, 0, len(texts))
	for _, text := range texts {
		raw, err := hex.DecodeString(text)
		if err != nil || len(raw) != tlog.HashSize {
			return nil, fmt.Errorf("%q is not a hex SHA-256 hash", text)
		}
		var hash tlog.Hash
		copy(hash[:], raw)
		hashes = append(hashes, hash)
	}
	return hashes, nil
}

// recordHash is the archive's leaf hash: RFC 6962's of kind || index || SHA-256(body)
// in format version 3, of kind || index || body in versions 1 and 2 (rule 1).
func recordHash(version int, kind int, index int64, body []byte) tlog.Hash {
	data := make([]byte, 0, 9+len(body))
	data = append(data, byte(kind))
	data = binary.BigEndian.AppendUint64(data, uint64(index))
	if version == 3 {
		digest := sha256.Sum256(body)
		return tlog.RecordHash(append(data, digest[:]...))
	}
	return tlog.RecordHash(append(data, body...))
}

// knownVersion stops at an archive format version this program does not know.
func knownVersion(version int) int {
	if version < 1 || version > 3 {
		fatal("archive format version %d is not 1, 2 or 3", version)
	}
	return version
}

func checkInclusion(c *checker, what string, tree tlog.Tree, index int64, leaf tlog.Hash, proof []string) {
	hashes, err := parseHashes(proof)
	if err == nil {
		err = tlog.CheckRecord(tlog.RecordProof(hashes), tree.N, tree.Hash, index, leaf)
	}
	c.result(fmt.Sprintf("%s: entry %d is in the tree of size %d (tlog.CheckRecord)", what, index, tree.N), err)
}

func verifierOf(vkey string) note.Verifier {
	verifier, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		fatal("note.NewVerifier: %v", err)
	}
	return verifier
}

func readJSON(path string, into any) {
	data, err := os.ReadFile(path)
	if err != nil {
		fatal("%v", err)
	}
	if err := json.Unmarshal(data, into); err != nil {
		fatal("%s: %v", path, err)
	}
}

func runCase(c *checker, path string) {
	var input checkCase
	readJSON(path, &input)
	verifier := verifierOf(input.VerifierKey)
	version := knownVersion(input.FormatVersion)
	trees := make([]*tlog.Tree, len(input.Checkpoints))
	for i, text := range input.Checkpoints {
		tree, err := openCheckpoint(text, verifier)
		what := fmt.Sprintf("checkpoint %d: signed by %s (note.Open)", i, verifier.Name())
		if err == nil {
			what += fmt.Sprintf(", tree %d %v", tree.N, tree.Hash)
		}
		if c.result(what, err) {
			trees[i] = &tree
		}
	}
	for i, proof := range input.Consistency {
		if i+1 >= len(trees) {
			fatal("consistency proof %d has no checkpoint %d to reach", i, i+1)
		}
		old, grown := trees[i], trees[i+1]
		if old == nil || grown == nil {
			c.result(fmt.Sprintf("consistency %d -> %d", i, i+1), fmt.Errorf("a checkpoint did not open"))
			continue
		}
		hashes, err := parseHashes(proof)
		if err == nil {
			err = tlog.CheckTree(tlog.TreeProof(hashes), grown.N, grown.Hash, old.N, old.Hash)
		}
		c.result(fmt.Sprintf("tree %d is a prefix of tree %d (tlog.CheckTree)", old.N, grown.N), err)
	}
	for _, r := range input.Records {
		if r.Checkpoint < 0 || r.Checkpoint >= len(trees) {
			fatal("record %d names checkpoint %d, which is not given", r.Index, r.Checkpoint)
		}
		what := fmt.Sprintf("record %d (kind %d)", r.Index, r.Kind)
		if trees[r.Checkpoint] == nil {
			c.result(what, fmt.Errorf("its checkpoint did not open"))
			continue
		}
		checkInclusion(c, what, *trees[r.Checkpoint], r.Index, recordHash(version, r.Kind, r.Index, r.Body), r.Proof)
	}
}

func runBundle(c *checker, dir string) {
	var manifest bundleManifest
	readJSON(filepath.Join(dir, "manifest.json"), &manifest)
	verifier := verifierOf(manifest.Archive.VerifierKey)
	version := 2 // a bundle made before version 3 names none (rule 1)
	if manifest.Archive.FormatVersion != nil {
		version = knownVersion(*manifest.Archive.FormatVersion)
	}
	tree, err := openCheckpoint(manifest.Archive.Checkpoint, verifier)
	if !c.result(fmt.Sprintf("bundle checkpoint: signed by %s (note.Open)", verifier.Name()), err) {
		return
	}
	var stated error
	if tree.N != manifest.Archive.TreeSize || hex.EncodeToString(tree.Hash[:]) != manifest.Archive.RootHash {
		stated = fmt.Errorf("manifest says %d %s", manifest.Archive.TreeSize, manifest.Archive.RootHash)
	}
	c.result("manifest's tree_size and root_hash are the checkpoint's", stated)
	for _, item := range manifest.Items {
		name := filepath.FromSlash(item.Sealed.Name)
		if filepath.IsAbs(name) || strings.HasPrefix(filepath.Clean(name), "..") {
			c.result(item.Bates, fmt.Errorf("sealed file %q is outside the bundle", item.Sealed.Name))
			continue
		}
		body, err := os.ReadFile(filepath.Join(dir, name))
		if !c.result(item.Bates+": sealed file present", err) {
			continue
		}
		leaf := recordHash(version, sealedKind, item.LeafIndex, body)
		var mismatch error
		if hex.EncodeToString(leaf[:]) != item.LeafHash {
			mismatch = fmt.Errorf("tlog.RecordHash gives %s, manifest says %s", leaf, item.LeafHash)
		}
		c.result(item.Bates+": leaf hash of its sealed file (tlog.RecordHash)", mismatch)
		checkInclusion(c, item.Bates, tree, item.LeafIndex, leaf, item.InclusionProof)
	}
}

func main() {
	c := &checker{}
	switch {
	case len(os.Args) == 2:
		runCase(c, os.Args[1])
	case len(os.Args) == 3 && os.Args[1] == "-bundle":
		runBundle(c, os.Args[2])
	default:
		fatal("usage: checkpoint CASE.json | checkpoint -bundle DIR")
	}
	if c.failed {
		fmt.Println("verdict: rejected")
		os.Exit(1)
	}
	fmt.Println("verdict: accepted")
}
