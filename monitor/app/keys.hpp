#pragma once
// `driftwatch keygen` and `driftwatch sign` (DESIGN.md "Command line"), and
// the C2SP signed-note verifier key string that names an Ed25519 key in
// node.vkey and checkpoint signatures (implemented once, in evidence/note).

#include <filesystem>
#include <string>
#include <string_view>

#include "common/crypto.hpp"
#include "common/result.hpp"
#include "evidence/note.hpp"

namespace driftwatch::app {

/// A valid C2SP signed-note key name: non-empty, valid UTF-8, no '+', no
/// Unicode white space (as Go's golang.org/x/mod/sumdb/note checks it).
bool is_valid_note_key_name(std::string_view name);

/// The 4-byte key hash of C2SP signed-note: the first 4 bytes of
/// SHA-256(name || "\n" || 0x01 || 32-byte key), big-endian. It prefixes
/// every note signature made with the key.
uint32_t note_key_hash(std::string_view name, const Ed25519PublicKey& key);

/// The C2SP verifier key string `<name>+<8 hex digits of the key hash>+
/// <base64(0x01 || 32-byte key)>`. `name` must satisfy
/// is_valid_note_key_name.
std::string note_verifier_key(std::string_view name, const Ed25519PublicKey& key);

/// The node's evidence log key in `state_dir` (DESIGN.md "Evidence log"):
/// node.key (PKCS#8 PEM, mode 0600), node.pub (SPKI PEM) and node.vkey (the
/// verifier key string for `key_name` and a newline), as a signer named
/// `key_name` (the log's origin, `driftwatch/<node_name>`). Created on the
/// first start; afterwards node.key is read, node.pub and node.vkey are
/// written again when missing, and refused when they name another key or
/// name (a changed key or node name would orphan the log's checkpoints).
Result<evidence::NoteSigner> load_or_create_node_key(const std::filesystem::path& state_dir,
                                                     const std::string& key_name);

/// Writes out_dir/NAME.key (PKCS#8 PEM, mode 0600), NAME.pub (SPKI PEM) and
/// NAME.vkey (the verifier key string and a newline), creating out_dir (0700)
/// when missing; refuses to overwrite any existing file. Prints one JSON line
/// {"name", "keyid", "vkey", "private_key", "public_key", "verifier_key"}.
/// Returns the exit code: 0, or 2 with one "driftwatch: ..." line on stderr.
int cmd_keygen(const std::string& name, const std::filesystem::path& out_dir);

/// Signs the payload in `payload_json` (strict JSON, an object) with the
/// PKCS#8 PEM key in `key_pem` as a DSSE envelope of `type` ("launch" or
/// "grant"). A payload with "config" but no "config_sha256" gets it filled
/// in (SHA-256 of the canonical config); a wrong one is an error. The payload
/// is signed as its canonical JSON, and the envelope printed as one line.
/// Returns the exit code: 0, or 2 with one "driftwatch: ..." line on stderr
/// and nothing on stdout.
int cmd_sign(const std::filesystem::path& key_pem, const std::string& type,
             const std::filesystem::path& payload_json);

/// What `driftwatch sign --oci-config` makes a launch payload of: the OCI
/// runtime config.json the control plane handed the runtime, and the fields
/// around it.
struct LaunchFromOci {
  std::filesystem::path oci_config;
  std::string launch_id;
  std::string sandbox_id;
  std::string runtime = "runc";
  std::string requested_by;
  std::string issued_at;  // RFC 3339; empty: now
};

/// `driftwatch sign --type launch --oci-config FILE ...`: builds the launch
/// payload {launch_id, sandbox_id, runtime, issued_at, requested_by, config,
/// config_sha256} from `launch` and signs it as cmd_sign does. Returns the
/// exit code: 0, or 2 with one "driftwatch: ..." line on stderr.
int cmd_sign_oci(const std::filesystem::path& key_pem, const LaunchFromOci& launch);

/// `driftwatch trust add --role ROLE --key PUB.pem [--name NAME] [--trust
/// FILE]`: adds the public key to the role in the trust file (created when
/// missing), replacing the file atomically (ingest::add_trusted_key says
/// what is refused). `name` empty: the key file's name without .pub/.pem.
/// Prints one JSON line {"trust", "role", "name", "keyid"}. Returns the exit
/// code: 0, or 2 with one "driftwatch: ..." line on stderr and the file as
/// it was.
int cmd_trust_add(const std::filesystem::path& trust_file, const std::string& role,
                  const std::filesystem::path& public_key, std::string name);

}  // namespace driftwatch::app
