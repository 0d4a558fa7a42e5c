#!/usr/bin/env python3
# Writes the seed corpora (corpus-NAME/) and dictionaries (dict/NAME.dict) of
# tests/fuzz that are easier generated than typed: envelopes with real
# Ed25519 signatures (by throwaway keys made on each run), trust files with
# real PEM keys, ingest scripts, journals with offset files. Hand-written
# seeds elsewhere in corpus-*/ are left alone. Run from anywhere:
#   python3 tests/fuzz/make_seeds.py
# Needs python3-cryptography (scripts/install-deps.sh installs it).
import base64, hashlib, json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives import serialization

root = here
def out(target, name, data):
    d = os.path.join(root, "corpus-" + target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str): data = data.encode()
    open(os.path.join(d, name), "wb").write(data)

def pub_pem(k):
    return k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
def keyid(k):
    der = k.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()
def pae(t, body):
    return b"DSSEv1 %d %s %d %s" % (len(t), t.encode(), len(body), body)
def envelope(t, body, k):
    return json.dumps({"payloadType": t, "payload": base64.b64encode(body).decode(),
        "signatures": [{"keyid": keyid(k), "sig": base64.b64encode(k.sign(pae(t, body))).decode()}]},
        separators=(",", ":"))
def jcs(v):  # enough of RFC 8785 for these documents (ASCII, integers)
    return json.dumps(v, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

LAUNCH = "application/vnd.driftwatch.launch.v1+json"
GRANT = "application/vnd.driftwatch.grant.v1+json"
config = json.load(open(os.path.join(root, "corpus-declared_projection", "runc-spec.json")))
config["process"]["terminal"] = False
config["process"]["args"] = ["sleep", "3600"]

def launch(launch_id="L-2026-11-24-0001", issued="2026-11-24T21:59:00Z", cfg=config, sandbox="agent-7", hashed=False):
    p = {"launch_id": launch_id, "sandbox_id": sandbox, "runtime": "runc", "issued_at": issued,
         "requested_by": "oidc:alice@example.org", "config": cfg}
    if hashed: p["config_sha256"] = hashlib.sha256(jcs(cfg).encode()).hexdigest()
    return p
def grant(grant_id="G-0001", launch_id="L-2026-11-24-0001", cfg=config, issued="2026-11-24T21:59:30Z"):
    return {"grant_id": grant_id, "launch_id": launch_id, "issued_at": issued,
            "requested_by": "oidc:agent-owner@example.org", "approved_by": "oidc:alice@example.org",
            "config": cfg, "reason": "CHG-1234: scratch volume"}
c = lambda v: json.dumps(v, separators=(",", ":"))

cp, op, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()

# canonical_json
out("canonical_json", "object", '{"b":[1,2.5,-0,1e20,0.000001],"a":"\\u00e9\\ud83d\\ude00","c":{"z":null,"y":true}}')
out("canonical_json", "numbers", '[0,1,-1,1.5e-7,123456789012345678901234567890,5e-324,1.7976931348623157e308]')
out("canonical_json", "keys-utf16-order", '{"\\u20ac":1,"\\ud83d\\ude00":2,"a":3,"":4}')
out("canonical_json", "oci-config", json.dumps(config))

# envelope (and RFC 3339 times)
body = c(launch(hashed=True)).encode()
out("envelope", "launch", envelope(LAUNCH, body, cp))
out("envelope", "grant", envelope(GRANT, c(grant()).encode(), op))
two = json.loads(envelope(LAUNCH, body, cp)); two["signatures"].append(json.loads(envelope(LAUNCH, body, other))["signatures"][0])
out("envelope", "two-signatures", c(two))
out("envelope", "time-utc", "2026-11-24T22:00:00Z")
out("envelope", "time-offset-fraction", "2026-11-24T23:00:00.123456+01:00")
out("envelope", "time-leap-second", "2016-12-31t23:59:60z")

# ingest: scripts (see ingest_fuzz.cpp); each ends with a restart, so that
# whatever a mutation makes of the steps, the restore is checked too.
L = launch()
_out = out
def out(target, name, data):
    if target == "ingest" and not data.endswith("R"): data += "\nR"
    _out(target, name, data)
out("ingest", "launch", "L" + c(L))
out("ingest", "launch-restart", "L" + c(L) + "\nR")
out("ingest", "launch-grant-restart", "L" + c(L) + "\nG" + c(grant()) + "\nR")
out("ingest", "conflict", "L" + c(L) + "\nL" + c(dict(L, requested_by="oidc:mallory@example.org")))
out("ingest", "orphan-grant", "G" + c(grant(launch_id="L-unknown")))
out("ingest", "grant-before-launch", "L" + c(L) + "\nG" + c(grant(issued="2026-11-24T21:00:00Z")))
out("ingest", "wrong-role-unknown-key", "W" + c(L) + "\nU" + c(L))
out("ingest", "stale-future", "L" + c(launch(issued="2020-01-01T00:00:00Z")) + "\nL" + c(launch(launch_id="L-2", issued="2027-01-01T00:00:00Z")))
out("ingest", "hash-as-given", "l" + c(launch(hashed=True)) + "\nl" + c(dict(launch(launch_id="L-3"), config_sha256="00" * 32)))
out("ingest", "payload-type", "Tapplication/x\t" + c(L) + "\nT" + GRANT + "\t" + c(grant()))
out("ingest", "type-flips", "F" + c(L) + "\nF" + c(grant()))
out("ingest", "raw-envelope", envelope(LAUNCH, c(launch(hashed=True)).encode(), cp))
out("ingest", "two-sandboxes-restart", "L" + c(L) + "\nL" + c(launch(launch_id="L-4", sandbox="agent-8")) + "\nR\nL" + c(launch(launch_id="L-5", sandbox="agent-8", issued="2026-11-24T21:59:50Z")) + "\nR")

out = _out

# trust
pem = lambda k: pub_pem(k)
out("trust", "two-roles", json.dumps({"control_plane": [{"name": "cp-1", "public_key_pem": pem(cp)}],
                                       "operator": [{"name": "alice", "public_key_pem": pem(op)}]}, indent=2))
out("trust", "control-plane-only", json.dumps({"control_plane": [{"name": "cp-1", "public_key_pem": pem(cp)},
                                                                 {"name": "cp-2", "public_key_pem": pem(other)}]}))
out("trust", "empty", "{}")
out("trust", "pem-only", pem(cp))

# node_config
out("node_config", "full", json.dumps({"node_name": "node-1", "listen": "127.0.0.1:9477", "state_dir": "/var/lib/driftwatch",
    "trust": "/etc/driftwatch/trust.json", "policy": None, "launch_journals": ["/var/log/launches.jsonl"],
    "discovery": {"runc_roots": ["/run/runc"], "crun_roots": ["/run/crun"], "cgroup_globs": ["/sys/fs/cgroup/agents/*"]},
    "sweep_interval_seconds": 10, "unattested_grace_seconds": 30, "event_max_age_seconds": 86400,
    "checkpoint_interval_seconds": 10, "probes": True, "syscall_probes": True}, indent=2))
out("node_config", "ipv6-policy", '{"listen": "[::1]:0", "policy": "/etc/driftwatch/strict-agent.json", "probes": false}')
out("node_config", "empty", "{}")

# journal: flags, split byte, [offset text NUL], journal bytes (see journal_fuzz.cpp)
lines = "".join(c(launch(launch_id="L-%d" % i)) + "\n" for i in range(3))
out("journal", "append", b"\x00\x80" + lines.encode())
out("journal", "rotate-unterminated", b"\x02\x60" + (lines + '{"partial": tr').encode())
out("journal", "rewrite", b"\x04\x40" + (lines + "  \n\t\r\n" + lines).encode())
first_line = c(launch(launch_id="L-0")) + "\n"
out("journal", "offset-file", b"\x01\x80" + b'{"inode":INODE,"offset":0}' + b"\0" + lines.encode())
pre = first_line[-64:].encode().hex()
out("journal", "offset-file-preceding", b"\x01\xa0" + ('{"inode":INODE,"offset":%d,"preceding_hex":"%s"}' % (len(first_line), pre)).encode() + b"\0" + lines.encode())
out("journal", "old-offset-file", b"\x01\x80" + ('{"inode":INODE,"offset":%d}' % len(first_line)).encode() + b"\0" + lines.encode())
out("journal", "commit-through", b"\x08\x80" + lines.encode())

# container_state: first byte even = runc state.json, odd = crun status
runc_state = {"id": "fuzz-ctr", "init_process_pid": 4242, "init_process_start": 777, "created": "2026-11-24T22:00:00.1Z",
              "config": {"rootfs": "/run/b/rootfs", "labels": ["bundle=/run/b"], "no_pivot_root": False},
              "rootless": False, "cgroup_paths": {"": "/sys/fs/cgroup/sandbox"},
              "namespace_paths": {"NEWNET": "/proc/4242/ns/net"}, "external_descriptors": ["/dev/null"]}
out("container_state", "runc", b"\x00" + json.dumps(runc_state).encode())
out("container_state", "runc-string-start", b"\x00" + json.dumps(dict(runc_state, init_process_start="777")).encode())
out("container_state", "crun", b"\x01" + json.dumps({"pid": 4242, "process-start-time": 777, "cgroup-path": "/sandbox",
    "rootfs": "/run/b/rootfs", "systemd-cgroup": False, "bundle": "/run/b", "created": "2026-11-24T22:00:00Z",
    "detached": True, "external_descriptors": "[\"/dev/null\"]"}).encode())

# declared_projection: the runc spec (kept as it is), plus the parts it lacks
userns = json.loads(json.dumps(config))
userns["linux"]["namespaces"].append({"type": "user"})
userns["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
userns["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
userns["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 100]}
out("declared_projection", "user-namespace.json", json.dumps(userns))
limited = json.loads(json.dumps(config))
limited["process"]["noNewPrivileges"] = True
limited["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}, {"type": "RLIMIT_NPROC", "hard": 64, "soft": 32}]
limited["process"]["apparmorProfile"] = "driftwatch-agent"
limited["root"]["readonly"] = True
limited["linux"]["resources"] = {"memory": {"limit": 134217728}, "pids": {"limit": 64}, "cpu": {"quota": 50000, "period": 100000}}
limited["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                               "syscalls": [{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"}]}
limited["process"]["capabilities"]["ambient"] = ["CAP_NET_BIND_SERVICE"]
out("declared_projection", "limits-seccomp-nnp.json", json.dumps(limited))
minimal = {"ociVersion": "1.0.2", "process": {"user": {"uid": 0, "gid": 0}, "args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}}
out("declared_projection", "minimal.json", json.dumps(minimal))
out("envelope", "minimal", '{"payloadType":"t","payload":"eA==","signatures":[{"keyid":"k","sig":""}]}')
out("declared_projection", "small-user-namespace.json", '{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"rlimits":[{"type":"RLIMIT_NOFILE","soft":1024,"hard":1024}]},"root":{"path":"rootfs","readonly":true},"linux":{"namespaces":[{"type":"user"},{"type":"pid"}],"uidMappings":[{"containerID":0,"hostID":1000,"size":1}],"gidMappings":[{"containerID":0,"hostID":1000,"size":1}]}}')
_out("node_config", "minimums", '{"sweep_interval_seconds": 1, "unattested_grace_seconds": 0, "event_max_age_seconds": 1, "checkpoint_interval_seconds": 1, "node_name": "a"}')

# ---- dictionaries
root = os.path.join(here, "dict")
os.makedirs(root, exist_ok=True)
def esc(b):
    out = ""
    for c in b.encode() if isinstance(b, str) else b:
        ch = chr(c)
        if ch == '"' or ch == '\\': out += "\\" + ch
        elif 32 <= c < 127: out += ch
        else: out += "\\x%02X" % c
    return out
json_tokens = ["{", "}", "[", "]", ",", ":", '""', "null", "true", "false", "0", "-1", "1.5", "1e999",
               "18446744073709551616", '"\\u0000"', "[]", "{}", '"\\ud83d\\ude00"']
def keys(*names): return ['"%s"' % n for n in names]
dicts = {
  "canonical_json": json_tokens + ["\\ud83d", "\\ude00", "\\u00e9", "1e20", "-0", "0.000001", "5e-324", "\\\"", "\\\\"],
  "envelope": json_tokens + keys("payloadType", "payload", "signatures", "keyid", "sig") +
      ['"signatures":[]', "=", "==", "T", "Z", "t", "z", "+00:00", "-23:59", ".", ":60", "2026-11-24T22:00:00Z",
       '"application/vnd.driftwatch.launch.v1+json"', '"application/vnd.driftwatch.grant.v1+json"'],
  "ingest": json_tokens + ["\nR", "\nL", "\nl", "\nG", "\ng", "\nW", "\nU", "\nT", "\t"] +
      keys("launch_id", "sandbox_id", "runtime", "issued_at", "requested_by", "config", "config_sha256",
           "grant_id", "approved_by", "reason", "ociVersion", "linux", "uidMappings", "namespaces", "type",
           "user", "process", "capabilities", "runc", "L-2026-11-24-0001", "G-0001", "agent-7") +
      ['"2026-11-24T21:59:00Z"', '"2026-11-24T22:05:00Z"', '"2026-11-23T22:00:00Z"',
       '"application/vnd.driftwatch.launch.v1+json"', '"application/vnd.driftwatch.grant.v1+json"'],
  "trust": json_tokens + keys("control_plane", "operator", "name", "public_key_pem") +
      ["-----BEGIN PUBLIC KEY-----", "-----END PUBLIC KEY-----", "\\n", "\n", "MCowBQYDK2VwAyEA"],
  "node_config": json_tokens + keys("node_name", "listen", "state_dir", "trust", "policy", "launch_journals",
      "discovery", "runc_roots", "crun_roots", "cgroup_globs", "sweep_interval_seconds",
      "unattested_grace_seconds", "event_max_age_seconds", "checkpoint_interval_seconds", "probes",
      "syscall_probes") +
      ['"127.0.0.1:0"', '"[::1]:65535"', '"localhost:9477"', '"/"', "315360000", "315360001"],
  "journal": json_tokens + ["INODE", "\n", "\x00", "\x01", "\x02", "\x04", "\x08", " \t\r\n"] +
      keys("inode", "offset", "preceding_hex") + ['"0a"', '""'],
  "container_state": json_tokens + ["\x00", "\x01", "4242", "777", '"777"', "1073741823", "1073741824"] +
      keys("init_process_pid", "init_process_start", "config", "labels", "bundle", "pid",
           "process-start-time", "bundle=/run/b"),
  "engines": json_tokens + ["\x00", "\x01", "/", "libpod", "sandbox", "container"] +
      keys("id", "names", "annotations", "io.container.manager", "io.kubernetes.cri.container-type",
           "io.kubernetes.cri.sandbox-namespace", "io.kubernetes.cri.sandbox-name",
           "io.kubernetes.cri.container-name"),
  "declared_projection": json_tokens + keys("ociVersion", "process", "user", "uid", "gid", "additionalGids",
      "capabilities", "bounding", "effective", "permitted", "inheritable", "ambient", "noNewPrivileges",
      "rlimits", "type", "hard", "soft", "apparmorProfile", "selinuxLabel", "root", "readonly", "linux",
      "namespaces", "uidMappings", "gidMappings", "containerID", "hostID", "size", "resources", "memory",
      "limit", "pids", "cpu", "quota", "period", "seccomp", "defaultAction", "syscalls", "maskedPaths",
      "readonlyPaths", "CAP_SYS_ADMIN", "RLIMIT_NOFILE", "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "network", "pid"),
  "http_request_target": ["/", "?", "&", "=", "+", "%", "%2F", "%00", "%ZZ", "%2", "/v1/sandboxes/", "/v1/report?launch="],
  "proc_parsers": ["\x00", "\x01", "\x02", "\x03", "\x04", "\x05", "\x06", "\x07", "\x08", "\t", "\n", " - ",
      "Uid:", "Gid:", "CapEff:", "CapBnd:", "NoNewPrivs:", "Seccomp:", "NSpid:", "Groups:", "Max open files",
      "unlimited", "0::/", ":memory:", "name=systemd", "net:[", "]", "max", "\\040", "\\134", ") S "],
}
for name, tokens in dicts.items():
    with open(os.path.join(root, name + ".dict"), "w") as f:
        f.write("# libFuzzer dictionary for %s_fuzz (tokens its inputs are made of)\n" % name)
        for i, t in enumerate(tokens):
            f.write('t%d="%s"\n' % (i, esc(t)))
