// Checks an evidence log written by driftwatch with Go's reference code,
// golang.org/x/mod/sumdb/note and golang.org/x/mod/sumdb/tlog (Debian's
// golang-golang-x-mod-dev), which share no code with driftwatch:
//
//   - the checkpoint (and every checkpoints/<size>) verifies with the vkey;
//   - the tree hash recomputed from the entry bundles alone is the
//     checkpoint's root;
//   - tlog.TileHashReader over our tiles authenticates them against that
//     root, and tlog.TreeHash over them gives it too;
//   - tlog.ProveRecord + CheckRecord prove every entry from our tiles;
//   - ProveTree + CheckTree prove every older checkpoint consistent;
//   - a tlog-proof@v1 file written by driftwatch checks with CheckRecord.
//
// Usage: go run main.go <log dir> <vkey> [<tlog-proof file> <entry file>]
// Prints one line per check and "interop: OK"; exits 1 on the first failure.
//
// With -tree first (go run main.go -tree <log dir> <vkey>) it stops after
// the checkpoint, the tree hash from the bundles and the tiles: the peer
// bench/evidence.sh times `driftwatch verify` against on a large log, where
// proving every entry one by one would measure ProveRecord instead.
//
// Build offline from the Debian package sources:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run main.go ...
package main

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

const height = 8

func fail(format string, args ...interface{}) {
	fmt.Printf("interop: FAILED: "+format+"\n", args...)
	os.Exit(1)
}

// tlog-tiles paths are Go's tile paths without the height element.
func c2spPath(t tlog.Tile) string {
	p := t.Path() // tile/8/<L>/<N>[.p/<W>], or tile/8/data/... for entries
	p = strings.TrimPrefix(p, "tile/8/")
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return "tile/" + p
}

type tileReader struct{ dir string }

func (r tileReader) Height() int { return height }

func (r tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(r.dir, c2spPath(t)))
		if os.IsNotExist(err) && t.W < 1<<height {
			// The partial may be gone once the full tile exists.
			full := t
			full.W = 1 << height
			data, err = os.ReadFile(filepath.Join(r.dir, c2spPath(full)))
			if err == nil && len(data) >= t.W*tlog.HashSize {
				data = data[:t.W*tlog.HashSize]
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r tileReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

type checkpoint struct {
	origin string
	size   int64
	root   tlog.Hash
}

func openCheckpoint(path string, verifier note.Verifier) checkpoint {
	msg, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("%s: note.Open: %v", path, err)
	}
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		fail("%s: a checkpoint has at least three lines", path)
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || strconv.FormatInt(size, 10) != lines[1] {
		fail("%s: bad tree size %q", path, lines[1])
	}
	root, err := tlog.ParseHash(lines[2])
	if err != nil {
		fail("%s: bad root hash: %v", path, err)
	}
	return checkpoint{lines[0], size, root}
}

// The entries of the tree of n entries, read from the entry bundles.
func readEntries(dir string, n int64) [][]byte {
	var entries [][]byte
	for index := int64(0); int64(len(entries)) < n; index++ {
		w := n - index<<height
		if w > 1<<height {
			w = 1 << height
		}
		t := tlog.Tile{H: height, L: -1, N: index, W: int(w)}
		data, err := os.ReadFile(filepath.Join(dir, c2spPath(t)))
		if os.IsNotExist(err) {
			t.W = 1 << height
			data, err = os.ReadFile(filepath.Join(dir, c2spPath(t)))
		}
		if err != nil {
			fail("%v", err)
		}
		for len(data) > 0 && int64(len(entries)) < n {
			if len(data) < 2 {
				fail("%s: torn length prefix", c2spPath(t))
			}
			l := int(binary.BigEndian.Uint16(data))
			if len(data) < 2+l {
				fail("%s: torn entry", c2spPath(t))
			}
			entries = append(entries, data[2:2+l])
			data = data[2+l:]
		}
	}
	return entries
}

type memoryHashes []tlog.Hash

func (m memoryHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		out[i] = m[x]
	}
	return out, nil
}

func main() {
	treeOnly := len(os.Args) > 1 && os.Args[1] == "-tree"
	if treeOnly {
		os.Args = append(os.Args[:1], os.Args[2:]...)
	}
	if len(os.Args) != 3 && len(os.Args) != 5 {
		fmt.Println("usage: main.go [-tree] <log dir> <vkey> [<tlog-proof file> <entry file>]")
		os.Exit(2)
	}
	dir, vkey := os.Args[1], os.Args[2]
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("note.NewVerifier: %v", err)
	}
	latest := openCheckpoint(filepath.Join(dir, "checkpoint"), verifier)
	fmt.Printf("checkpoint: note.Open verified %s, size %d, root %s\n", latest.origin, latest.size, latest.root)

	// The tree hash from the entries alone, with tlog's own storage.
	entries := readEntries(dir, latest.size)
	var stored memoryHashes
	for i, e := range entries {
		hashes, err := tlog.StoredHashes(int64(i), e, stored)
		if err != nil {
			fail("StoredHashes: %v", err)
		}
		stored = append(stored, hashes...)
	}
	fromEntries, err := tlog.TreeHash(latest.size, stored)
	if err != nil || fromEntries != latest.root {
		fail("tree hash from the entry bundles is %s (%v), the checkpoint says %s", fromEntries, err, latest.root)
	}
	fmt.Printf("entries: tree hash of %d entries from the bundles matches\n", len(entries))

	// Our tiles, authenticated by tlog against the checkpoint.
	tree := tlog.Tree{N: latest.size, Hash: latest.root}
	reader := tlog.TileHashReader(tree, tileReader{dir})
	fromTiles, err := tlog.TreeHash(latest.size, reader)
	if err != nil || fromTiles != latest.root {
		fail("TreeHash over the tiles: %s, %v", fromTiles, err)
	}
	for _, t := range tlog.NewTiles(height, 0, latest.size) {
		// NewTiles lists every width a rightmost tile passed through; the
		// log serves the widths of the sizes it stopped at, this one's last.
		if t.L < 0 || (t.W != 1<<height && int64(t.W) != (latest.size>>uint(height*t.L))%(1<<height)) {
			continue
		}
		data, err := tlog.ReadTileData(t, stored)
		if err != nil {
			fail("ReadTileData %s: %v", c2spPath(t), err)
		}
		ours, err := tileReader{dir}.ReadTiles([]tlog.Tile{t})
		if err != nil {
			fail("%s: %v", c2spPath(t), err)
		}
		if !bytes.Equal(ours[0], data) {
			fail("%s differs from the tile tlog computes", c2spPath(t))
		}
	}
	fmt.Printf("tiles: TileHashReader authenticated them, TreeHash matches, every tile equals tlog's\n")
	if treeOnly {
		fmt.Println("interop: OK (-tree: no proofs checked)")
		return
	}

	for i, e := range entries {
		proof, err := tlog.ProveRecord(latest.size, int64(i), reader)
		if err != nil {
			fail("ProveRecord %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, latest.size, latest.root, int64(i), tlog.RecordHash(e)); err != nil {
			fail("CheckRecord %d: %v", i, err)
		}
	}
	fmt.Printf("inclusion: ProveRecord + CheckRecord for all %d entries\n", len(entries))

	names, _ := os.ReadDir(filepath.Join(dir, "checkpoints"))
	var sizes []int64
	for _, name := range names {
		cp := openCheckpoint(filepath.Join(dir, "checkpoints", name.Name()), verifier)
		if strconv.FormatInt(cp.size, 10) != name.Name() {
			fail("checkpoints/%s holds size %d", name.Name(), cp.size)
		}
		proof, err := tlog.ProveTree(latest.size, cp.size, reader)
		if err != nil {
			fail("ProveTree %d: %v", cp.size, err)
		}
		if err := tlog.CheckTree(proof, latest.size, latest.root, cp.size, cp.root); err != nil {
			fail("CheckTree %d -> %d: %v", cp.size, latest.size, err)
		}
		sizes = append(sizes, cp.size)
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })
	fmt.Printf("consistency: checkpoints %v verified and consistent with the latest\n", sizes)

	if len(os.Args) == 5 {
		text, err := os.ReadFile(os.Args[3])
		if err != nil {
			fail("%v", err)
		}
		entry, err := os.ReadFile(os.Args[4])
		if err != nil {
			fail("%v", err)
		}
		parts := strings.SplitN(string(text), "\n\n", 2)
		lines := strings.Split(parts[0], "\n")
		if len(parts) != 2 || lines[0] != "c2sp.org/tlog-proof@v1" || !strings.HasPrefix(lines[1], "index ") {
			fail("not a tlog-proof@v1")
		}
		index, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "index "), 10, 64)
		if err != nil {
			fail("bad index: %v", err)
		}
		var proof tlog.RecordProof
		for _, line := range lines[2:] {
			h, err := base64.StdEncoding.DecodeString(line)
			if err != nil || len(h) != tlog.HashSize {
				fail("bad proof hash %q", line)
			}
			var hash tlog.Hash
			copy(hash[:], h)
			proof = append(proof, hash)
		}
		n, err := note.Open([]byte(parts[1]), note.VerifierList(verifier))
		if err != nil {
			fail("the proof's checkpoint: note.Open: %v", err)
		}
		cpLines := strings.Split(n.Text, "\n")
		size, _ := strconv.ParseInt(cpLines[1], 10, 64)
		root, err := tlog.ParseHash(cpLines[2])
		if err != nil {
			fail("the proof's checkpoint root: %v", err)
		}
		if err := tlog.CheckRecord(proof, size, root, index, tlog.RecordHash(entry)); err != nil {
			fail("tlog-proof: CheckRecord: %v", err)
		}
		fmt.Printf("tlog-proof: index %d in the tree of %d checks with CheckRecord\n", index, size)
	}
	fmt.Println("interop: OK")
}
