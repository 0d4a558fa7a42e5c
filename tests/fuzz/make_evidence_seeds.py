#!/usr/bin/env python3
# Writes corpus-evidence/ and dict/evidence.dict for evidence_fuzz. Kept apart
# from make_seeds.py because these seeds are deterministic: they are signed
# with the fuzz target's own fixed key (seed 32 x 0x2a, name driftwatch/fuzz),
# so that the signature checks past parsing are reached, and re-running
# changes nothing. Run from anywhere: python3 tests/fuzz/make_evidence_seeds.py
# Needs python3-cryptography (scripts/install-deps.sh installs it).
import base64, hashlib, os, struct
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

here = os.path.dirname(os.path.abspath(__file__))
corpus = os.path.join(here, "corpus-evidence")
os.makedirs(corpus, exist_ok=True)

def out(name, mode, data):
    if isinstance(data, str): data = data.encode()
    open(os.path.join(corpus, name), "wb").write(bytes([mode]) + data)

NAME = "driftwatch/fuzz"
key = Ed25519PrivateKey.from_private_bytes(b"\x2a" * 32)
raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
key_hash = hashlib.sha256(NAME.encode() + b"\n\x01" + raw).digest()[:4]
vkey = "%s+%s+%s" % (NAME, key_hash.hex(), base64.b64encode(b"\x01" + raw).decode())

def sign(text):
    sig = base64.b64encode(key_hash + key.sign(text.encode())).decode()
    return text + "\n\u2014 " + NAME + " " + sig + "\n"

def leaf(e): return hashlib.sha256(b"\x00" + e).digest()
def node(l, r): return hashlib.sha256(b"\x01" + l + r).digest()
b64 = lambda b: base64.b64encode(b).decode()

entries = [b'{"seq":0,"type":"test"}', b'{"seq":1,"type":"test"}', b'{"seq":2,"type":"test"}']
leaves = [leaf(e) for e in entries]
root = node(node(leaves[0], leaves[1]), leaves[2])
checkpoint = "%s\n3\n%s\n" % (NAME, b64(root))
note = sign(checkpoint)

out("note", 0, note)
out("note-unknown-key", 0, checkpoint + "\n\u2014 other.example/log " + b64(b"\x01\x02\x03\x04" + b"\x00" * 64) + "\n")
out("note-two-signatures", 0, note + "\u2014 witness.example " + b64(b"\x09\x09\x09\x09" + b"\x01" * 64) + "\n")
out("checkpoint", 1, checkpoint)
out("checkpoint-extension", 1, checkpoint + "extension line\n")
out("checkpoint-empty", 1, "%s\n0\n%s\n" % (NAME, b64(hashlib.sha256(b"").digest())))
# The proof of entry 2 ("fuzz" is what the target proves: these fail at the
# inclusion step, after the signature).
out("proof", 2, "c2sp.org/tlog-proof@v1\nindex 2\n%s\n\n%s" % (b64(node(leaves[0], leaves[1])), note))
out("proof-extra", 2, "c2sp.org/tlog-proof@v1\nextra %s\nindex 0\n%s\n%s\n\n%s" %
    (b64(b"launch-1"), b64(leaves[1]), b64(leaves[2]), note))
out("bundle", 3, b"".join(struct.pack(">H", len(e)) + e for e in entries))
out("bundle-torn", 3, struct.pack(">H", 300) + b"short")
out("tile-path", 4, "tile/0/x001/x234/067.p/5")
out("tile-path-entries", 4, "tile/entries/123")
out("vkey", 5, vkey + "\n")

tokens = ["\u2014 ", "\n\n", "\n", NAME, "c2sp.org/tlog-proof@v1", "extra ", "index ", "tile/",
          "entries/", ".p/", "x001/", "000", "255", "256", "+", "=", "AAAA", vkey]
with open(os.path.join(here, "dict", "evidence.dict"), "w") as f:
    f.write("# libFuzzer dictionary for evidence_fuzz (tokens its inputs are made of)\n")
    for i, t in enumerate(tokens):
        esc = "".join(c if 0x20 <= ord(c) < 0x7f and c not in '"\\' else "".join("\\x%02x" % b for b in c.encode()) for c in t)
        f.write('t%d="%s"\n' % (i, esc))
