#!/usr/bin/env python3
"""An independent DSSE signer and verifier for driftwatch's tests.

Written against DESIGN.md only, with Python's `cryptography` (OpenSSL
underneath, but none of driftwatch's code), so that a test can show that
envelopes from a control plane that is not driftwatch are accepted, and that
driftwatch's envelopes verify elsewhere.

    sign_envelope.py keygen DIR NAME
        DIR/NAME.key (PKCS#8 PEM, 0600), DIR/NAME.pub (SPKI PEM) and
        DIR/NAME.vkey (C2SP signed-note verifier key); prints one JSON line
        {"name", "keyid", "vkey", "private_key", "public_key", "public_key_pem"}.
    sign_envelope.py sign --key PEM --type launch|grant [--raw] PAYLOAD.json
        prints one envelope line. The payload is signed as its canonical JSON,
        with config_sha256 filled in when missing; --raw signs the file's
        bytes exactly as they are (for tests of malformed or mismatched input).
    sign_envelope.py demo-launch DIR [--launch-id ID] [--sandbox-id ID] [--issued-at T]
        a fresh key in DIR and a launch event signed with it; prints one JSON
        line {"public_key_pem", "keyid", "envelope", "payload"}.
    sign_envelope.py verify --pub PEM [ENVELOPE_FILE]
        verifies an envelope (from the file, or stdin) against a public key;
        prints {"keyid", "payload_type", "payload", "config_sha256_ok"} and
        exits 0, or names what is wrong on stderr and exits 1.
    sign_envelope.py vkey --pub PEM --name NAME
        prints the C2SP verifier key string of a public key.

Exit codes: 0 success, 1 verification failed, 2 usage or input error.

The canonical JSON here is a minimal RFC 8785 (JCS): exact for objects,
arrays, strings, booleans, null and integers up to 2^53, which is all the
tests use; other numbers are refused rather than guessed at.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import sys

try:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )
except ImportError as error:  # the C++ test checks for this and skips
    sys.stderr.write(f"sign_envelope.py: python3 cryptography is missing: {error}\n")
    sys.exit(3)

PAYLOAD_TYPES = {
    "launch": "application/vnd.driftwatch.launch.v1+json",
    "grant": "application/vnd.driftwatch.grant.v1+json",
}
MAX_EXACT_INTEGER = 2**53


class InputError(Exception):
    pass


# ------------------------------------------------------------------ JCS


def jcs(value):
    """RFC 8785 bytes of value (see the module doc for the supported subset)."""
    return _jcs(value).encode("utf-8")


def _jcs_string(text):
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\r":
            out.append("\\r")
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _jcs(value):
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        if abs(value) > MAX_EXACT_INTEGER:
            raise InputError(f"integer {value} is beyond 2^53; this minimal JCS does not do it")
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) <= MAX_EXACT_INTEGER:
            return str(int(value))
        raise InputError(f"number {value!r} is not an integer; this minimal JCS does not do it")
    if isinstance(value, str):
        return _jcs_string(value)
    if isinstance(value, list):
        return "[" + ",".join(_jcs(item) for item in value) + "]"
    if isinstance(value, dict):
        # JCS sorts keys by UTF-16 code units; big-endian UTF-16 bytes sort alike.
        keys = sorted(value, key=lambda k: k.encode("utf-16-be", "surrogatepass"))
        return "{" + ",".join(_jcs_string(k) + ":" + _jcs(value[k]) for k in keys) + "}"
    raise InputError(f"cannot canonicalise a {type(value).__name__}")


def config_sha256(config):
    return hashlib.sha256(jcs(config)).hexdigest()


def _no_duplicate_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise InputError(f"duplicate object key {key!r}")
        seen[key] = value
    return seen


def parse_json(text, what):
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ValueError as error:
        raise InputError(f"{what} is not JSON: {error}") from None


# ------------------------------------------------------------------ DSSE


def pae(payload_type, body):
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(body), body)


def keyid_of(public_key):
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def public_pem(public_key):
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def sign_envelope(private_key, payload_type, body):
    signature = private_key.sign(pae(payload_type, body))
    envelope = {
        "payloadType": payload_type,
        "payload": base64.b64encode(body).decode("ascii"),
        "signatures": [
            {
                "keyid": keyid_of(private_key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }
    return json.dumps(envelope, separators=(",", ":"))


def strict_b64decode(text, what):
    if not isinstance(text, str):
        raise InputError(f"{what} is not a string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as error:
        raise InputError(f"{what} is not base64: {error}") from None


def verifier_key(name, public_key):
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    algorithm_and_key = b"\x01" + raw  # C2SP signed-note: 0x01 is Ed25519
    key_hash = hashlib.sha256(name.encode("utf-8") + b"\n" + algorithm_and_key).hexdigest()[:8]
    return name + "+" + key_hash + "+" + base64.b64encode(algorithm_and_key).decode("ascii")


def load_private_key(path):
    with open(path, "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"{path} is not an Ed25519 private key")
    return key


def load_public_key(path):
    with open(path, "rb") as handle:
        key = serialization.load_pem_public_key(handle.read())
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"{path} is not an Ed25519 public key")
    return key


def canonical_payload(payload):
    """The payload's JCS bytes, config_sha256 filled in when missing."""
    if not isinstance(payload, dict):
        raise InputError("a payload is a JSON object")
    if "config" in payload:
        computed = config_sha256(payload["config"])
        if "config_sha256" not in payload:
            payload["config_sha256"] = computed
        elif payload["config_sha256"] != computed:
            raise InputError(
                f"config_sha256 is {payload['config_sha256']!r} but the config hashes to {computed}"
            )
    return jcs(payload)


# ------------------------------------------------------------------ commands


def write_new(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def cmd_keygen(args):
    os.makedirs(args.dir, mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    paths = {ext: os.path.join(args.dir, f"{args.name}.{ext}") for ext in ("key", "pub", "vkey")}
    vkey = verifier_key(args.name, key.public_key())
    write_new(paths["key"], pem, 0o600)
    write_new(paths["pub"], public_pem(key.public_key()).encode("ascii"), 0o644)
    write_new(paths["vkey"], (vkey + "\n").encode("utf-8"), 0o644)
    print(
        json.dumps(
            {
                "name": args.name,
                "keyid": keyid_of(key.public_key()),
                "vkey": vkey,
                "private_key": paths["key"],
                "public_key": paths["pub"],
                "public_key_pem": public_pem(key.public_key()),
            }
        )
    )
    return 0


def cmd_sign(args):
    key = load_private_key(args.key)
    with open(args.payload, "rb") as handle:
        raw = handle.read()
    body = raw if args.raw else canonical_payload(parse_json(raw, args.payload))
    print(sign_envelope(key, PAYLOAD_TYPES[args.type], body))
    return 0


def cmd_demo_launch(args):
    os.makedirs(args.dir, mode=0o700, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    with open(os.path.join(args.dir, "py-cp.pub"), "w", encoding="ascii") as handle:
        handle.write(public_pem(key.public_key()))
    issued_at = args.issued_at or datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    config = {
        "ociVersion": "1.0.2",
        "process": {
            "args": ["sh", "-c", "sleep 3600"],
            "cwd": "/",
            "noNewPrivileges": True,
            "user": {"gid": 1000, "uid": 1000},
            "capabilities": {"bounding": ["CAP_KILL"], "effective": [], "permitted": []},
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "agent",
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}],
            "resources": {"memory": {"limit": 134217728}, "pids": {"limit": 64}},
        },
    }
    payload = {
        "launch_id": args.launch_id,
        "sandbox_id": args.sandbox_id,
        "runtime": "runc",
        "issued_at": issued_at,
        "requested_by": "oidc:alice@example.org",
        "config": config,
    }
    body = canonical_payload(payload)
    print(
        json.dumps(
            {
                "public_key_pem": public_pem(key.public_key()),
                "keyid": keyid_of(key.public_key()),
                "envelope": sign_envelope(key, PAYLOAD_TYPES["launch"], body),
                "payload": payload,
            }
        )
    )
    return 0


def cmd_verify(args):
    key = load_public_key(args.pub)
    if args.envelope in (None, "-"):
        text = sys.stdin.buffer.read()
    else:
        with open(args.envelope, "rb") as handle:
            text = handle.read()
    envelope = parse_json(text, "the envelope")
    if not isinstance(envelope, dict) or set(envelope) != {"payloadType", "payload", "signatures"}:
        raise InputError("an envelope has exactly payloadType, payload and signatures")
    payload_type = envelope["payloadType"]
    if not isinstance(payload_type, str):
        raise InputError("payloadType is not a string")
    body = strict_b64decode(envelope["payload"], "payload")
    signatures = envelope["signatures"]
    if not isinstance(signatures, list) or not signatures:
        raise InputError("signatures is not a non-empty array")
    keyid = keyid_of(key)
    mine = [s for s in signatures if isinstance(s, dict) and s.get("keyid") == keyid]
    if not mine:
        sys.stderr.write(f"sign_envelope.py: no signature by key {keyid}\n")
        return 1
    try:
        key.verify(strict_b64decode(mine[0].get("sig"), "sig"), pae(payload_type, body))
    except InvalidSignature:
        sys.stderr.write(f"sign_envelope.py: the signature by key {keyid} does not verify\n")
        return 1
    payload = parse_json(body, "the payload")
    config_ok = None
    if isinstance(payload, dict) and "config" in payload:
        config_ok = payload.get("config_sha256") == config_sha256(payload["config"])
    print(
        json.dumps(
            {
                "keyid": keyid,
                "payload_type": payload_type,
                "payload": payload,
                "config_sha256_ok": config_ok,
                "payload_is_canonical": body == jcs(payload),
            }
        )
    )
    return 0


def cmd_vkey(args):
    print(verifier_key(args.name, load_public_key(args.pub)))
    return 0


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen")
    keygen.add_argument("dir")
    keygen.add_argument("name")
    keygen.set_defaults(run=cmd_keygen)

    sign = commands.add_parser("sign")
    sign.add_argument("--key", required=True)
    sign.add_argument("--type", required=True, choices=sorted(PAYLOAD_TYPES))
    sign.add_argument("--raw", action="store_true")
    sign.add_argument("payload")
    sign.set_defaults(run=cmd_sign)

    demo = commands.add_parser("demo-launch")
    demo.add_argument("dir")
    demo.add_argument("--launch-id", default="L-py-0001")
    demo.add_argument("--sandbox-id", default="py-agent")
    demo.add_argument("--issued-at")
    demo.set_defaults(run=cmd_demo_launch)

    verify = commands.add_parser("verify")
    verify.add_argument("--pub", required=True)
    verify.add_argument("envelope", nargs="?")
    verify.set_defaults(run=cmd_verify)

    vkey = commands.add_parser("vkey")
    vkey.add_argument("--pub", required=True)
    vkey.add_argument("--name", required=True)
    vkey.set_defaults(run=cmd_vkey)

    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (InputError, OSError, ValueError) as error:
        sys.stderr.write(f"sign_envelope.py: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
