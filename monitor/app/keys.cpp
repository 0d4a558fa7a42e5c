#include "app/keys.hpp"

#include "common/file_io.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/result.hpp"
#include "common/sha256.hpp"
#include "evidence/note.hpp"
#include "ingest/envelope.hpp"
#include "ingest/ingestor.hpp"
#include "ingest/trust.hpp"

namespace driftwatch::app {
namespace {

using nlohmann::json;

constexpr int kOk = 0;
constexpr int kBadInput = 2;

int report(const std::string& message) {
  std::cerr << "driftwatch: " << message << "\n";
  return kBadInput;
}

Result<std::string> read_small_file(const std::filesystem::path& path, size_t limit,
                                    std::string_view what) {
  return read_regular_file(path, limit, what);
}

// Creates `path` (which must not exist) with `mode` and the given content,
// fsync'd.
Result<void> write_new_file(const std::filesystem::path& path, std::string_view content,
                            mode_t mode) {
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST) return fail(name, " already exists; not overwriting it");
    return fail("cannot create ", name, ": ", std::strerror(errno));
  }
  // The umask may have narrowed the mode; 0600 must be exactly that, and a
  // public key readable by others is intended.
  if (::fchmod(fd, mode) != 0) {
    const int err = errno;
    ::close(fd);
    return fail("cannot set the mode of ", name, ": ", std::strerror(err));
  }
  while (!content.empty()) {
    const ssize_t n = ::write(fd, content.data(), content.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;
      ::close(fd);
      return fail("cannot write ", name, ": ", std::strerror(err));
    }
    content.remove_prefix(static_cast<size_t>(n));
  }
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    return fail("cannot fsync ", name, ": ", std::strerror(err));
  }
  ::close(fd);
  return {};
}

// keygen's name is also a file name: on top of the note rules, no '/', no
// control characters, and not a dot-only name.
std::optional<std::string> keygen_name_problem(std::string_view name) {
  if (!is_valid_note_key_name(name)) {
    return "key name \"" + std::string(name) +
           "\" is not a valid signed-note key name (non-empty UTF-8, no '+', no white space)";
  }
  for (const char c : name) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == '/' || byte < 0x20 || byte == 0x7F) {
      return "key name \"" + std::string(name) +
             "\" cannot be a file name (no '/' or control characters)";
    }
  }
  if (name == "." || name == "..") return "key name \"" + std::string(name) + "\" is not a name";
  return std::nullopt;
}

}  // namespace

bool is_valid_note_key_name(std::string_view name) {
  return evidence::is_valid_key_name(name);
}

uint32_t note_key_hash(std::string_view name, const Ed25519PublicKey& key) {
  return evidence::key_hash(name, key);
}

std::string note_verifier_key(std::string_view name, const Ed25519PublicKey& key) {
  return evidence::verifier_key(name, key);
}

Result<evidence::NoteSigner> load_or_create_node_key(const std::filesystem::path& state_dir,
                                                     const std::string& key_name) {
  const std::filesystem::path private_path = state_dir / "node.key";
  const std::filesystem::path public_path = state_dir / "node.pub";
  const std::filesystem::path vkey_path = state_dir / "node.vkey";
  if (!evidence::is_valid_key_name(key_name))
    return fail("the evidence log key name \"", key_name,
                "\" is not a signed-note key name (non-empty UTF-8, no '+' or spaces); check "
                "node_name in the node configuration");
  DW_TRY(existing, read_regular_file_if_exists(private_path, 64 * 1024, "node key"));
  std::optional<Ed25519PrivateKey> key;
  if (existing) {
    auto parsed = Ed25519PrivateKey::from_pem(*existing);
    if (!parsed)
      return fail(private_path.string(),
                  " is not an Ed25519 private key: ", parsed.error().message);
    key = std::move(*parsed);
  } else {
    auto generated = Ed25519PrivateKey::generate();
    if (!generated) return std::unexpected(generated.error());
    if (auto ok = write_new_file(private_path, generated->pem(), 0600); !ok)
      return std::unexpected(ok.error());
    key = std::move(*generated);
  }
  DW_TRY(signer, evidence::NoteSigner::make(key_name, *key));
  const Ed25519PublicKey public_key = key->public_key();
  const struct {
    const std::filesystem::path& path;
    std::string content;
  } derived[] = {{public_path, public_key.pem()}, {vkey_path, signer.vkey() + "\n"}};
  for (const auto& file : derived) {
    DW_TRY(on_disk, read_regular_file_if_exists(file.path, 64 * 1024, "node key file"));
    if (!on_disk) {
      if (auto ok = write_new_file(file.path, file.content, 0644); !ok)
        return std::unexpected(ok.error());
    } else if (*on_disk != file.content) {
      return fail(file.path.string(), " does not match ", private_path.string(),
                  " for the key name ", key_name,
                  " (was the key or the node name changed?); restore the old key or name, or "
                  "move the state directory's evidence/ and node.* aside to start a new log");
    }
  }
  return signer;
}

int cmd_keygen(const std::string& name, const std::filesystem::path& out_dir) {
  if (auto problem = keygen_name_problem(name)) return report(*problem);
  auto key = Ed25519PrivateKey::generate();
  if (!key) return report(key.error().message);
  const Ed25519PublicKey public_key = key->public_key();
  const std::string vkey = note_verifier_key(name, public_key);

  const std::filesystem::path private_path = out_dir / (name + ".key");
  const std::filesystem::path public_path = out_dir / (name + ".pub");
  const std::filesystem::path vkey_path = out_dir / (name + ".vkey");
  // Refuse before writing anything, so a refusal leaves the directory as it was.
  for (const auto& path : {private_path, public_path, vkey_path}) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      return report(path.string() + " already exists; not overwriting it");
    }
  }
  if (auto made = make_private_dirs(out_dir); !made) return report(made.error().message);

  std::vector<std::filesystem::path> written;
  const struct {
    const std::filesystem::path& path;
    std::string content;
    mode_t mode;
  } files[] = {{private_path, key->pem(), 0600},
               {public_path, public_key.pem(), 0644},
               {vkey_path, vkey + "\n", 0644}};
  for (const auto& file : files) {
    if (auto ok = write_new_file(file.path, file.content, file.mode); !ok) {
      for (const auto& path : written) ::unlink(path.c_str());
      return report(ok.error().message);
    }
    written.push_back(file.path);
  }

  const json summary = {{"name", name},
                        {"keyid", public_key.keyid()},
                        {"vkey", vkey},
                        {"private_key", private_path.string()},
                        {"public_key", public_path.string()},
                        {"verifier_key", vkey_path.string()}};
  std::cout << summary.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
  return kOk;
}

namespace {

Result<Ed25519PrivateKey> read_private_key(const std::filesystem::path& key_pem) {
  DW_TRY(pem, read_small_file(key_pem, 64 * 1024, "key file"));
  auto key = Ed25519PrivateKey::from_pem(pem);
  if (!key) return wrap(key.error(), key_pem.string(), ": ");
  return key;
}

// Fills in config_sha256, refuses what the ingestor would call malformed,
// signs the canonical payload and prints the envelope line. `source` names
// the payload in messages.
int sign_payload(const Ed25519PrivateKey& key, ingest::EnvelopeKind kind, json payload,
                 const std::string& source) {
  const std::string type = ingest::to_string(kind);
  if (!payload.is_object()) {
    return report(source + " is a JSON " + payload.type_name() + ", but a " + type +
                  " payload is an object");
  }

  if (const auto config = payload.find("config"); config != payload.end()) {
    auto canonical_config = canonical_json(*config);
    if (!canonical_config) return report(source + ": config: " + canonical_config.error().message);
    const std::string computed = sha256_hex(*canonical_config);
    const auto claimed = payload.find("config_sha256");
    if (claimed == payload.end()) {
      payload["config_sha256"] = computed;
    } else if (!claimed->is_string() || claimed->get<std::string>() != computed) {
      return report(source + ": config_sha256 is " + claimed->dump() +
                    " but the canonical JSON of config hashes to " + computed +
                    "; remove config_sha256 to have it filled in");
    }
  }
  // What every driftwatch would reject as malformed is not worth a
  // signature: say so here, where the sender can fix it.
  if (auto problem = ingest::payload_problem(kind, payload); !problem.empty()) {
    return report(source + ": not a " + type + " payload: it " + problem +
                  " (see docs/formats.md)");
  }

  auto body = canonical_json(payload);
  if (!body) return report(source + ": " + body.error().message);
  const std::string envelope = ingest::sign_envelope(
      kind == ingest::EnvelopeKind::launch ? ingest::kLaunchPayloadType : ingest::kGrantPayloadType,
      *body, key);
  if (envelope.size() > ingest::kMaxEnvelopeBytes) {
    return report("the envelope for " + source + " would be " + std::to_string(envelope.size()) +
                  " bytes, more than the 1 MiB every driftwatch refuses");
  }
  std::cout << envelope << "\n" << std::flush;
  return kOk;
}

}  // namespace

int cmd_sign(const std::filesystem::path& key_pem, const std::string& type,
             const std::filesystem::path& payload_json) {
  std::optional<ingest::EnvelopeKind> kind;
  if (type == "launch") kind = ingest::EnvelopeKind::launch;
  if (type == "grant") kind = ingest::EnvelopeKind::grant;
  if (!kind) return report("--type must be launch or grant, not \"" + type + "\"");

  auto key = read_private_key(key_pem);
  if (!key) return report(key.error().message);
  auto text = read_small_file(payload_json, ingest::kMaxEnvelopeBytes, "payload file");
  if (!text) return report(text.error().message);
  auto payload = parse_json(*text, payload_json.string());
  if (!payload) return report(payload.error().message);
  return sign_payload(*key, *kind, std::move(*payload), payload_json.string());
}

int cmd_sign_oci(const std::filesystem::path& key_pem, const LaunchFromOci& launch) {
  auto key = read_private_key(key_pem);
  if (!key) return report(key.error().message);
  // The config exactly as the runtime reads it: the hash is over its
  // canonical JSON, so formatting does not matter, content does.
  auto text = read_small_file(launch.oci_config, 4u << 20, "OCI config");
  if (!text) return report(text.error().message);
  auto config = parse_json(*text, launch.oci_config.string());
  if (!config) return report(config.error().message);
  const std::string issued_at = launch.issued_at.empty()
                                    ? ingest::format_rfc3339(static_cast<int64_t>(::time(nullptr)))
                                    : launch.issued_at;
  json payload{{"launch_id", launch.launch_id},       {"sandbox_id", launch.sandbox_id},
               {"runtime", launch.runtime},           {"issued_at", issued_at},
               {"requested_by", launch.requested_by}, {"config", std::move(*config)}};
  return sign_payload(*key, ingest::EnvelopeKind::launch, std::move(payload),
                      "the launch payload from " + launch.oci_config.string());
}

int cmd_trust_add(const std::filesystem::path& trust_file, const std::string& role_name,
                  const std::filesystem::path& public_key, std::string name) {
  auto role = ingest::parse_trust_role(role_name);
  if (!role) return report(role.error().message);
  if (name.empty()) {
    name = public_key.filename().string();
    for (const char* suffix : {".pub", ".pem"})
      if (name.size() > std::strlen(suffix) && name.ends_with(suffix))
        name.resize(name.size() - std::strlen(suffix));
  }
  auto pem = read_small_file(public_key, 64 * 1024, "public key file");
  if (!pem) return report(pem.error().message);
  auto existing = read_regular_file_if_exists(trust_file, 1 << 20, "trust file");
  if (!existing) return report(existing.error().message);
  auto text = ingest::add_trusted_key(*existing, *role, name, *pem);
  if (!text) return report(trust_file.string() + ": " + text.error().message);
  // Public keys: readable by whoever audits the node. An existing file
  // keeps its mode.
  mode_t mode = 0644;
  struct stat st {};
  if (*existing && ::stat(trust_file.c_str(), &st) == 0) mode = st.st_mode & 07777;
  if (auto written = replace_file_durably(trust_file, *text, mode, "trust file"); !written)
    return report(written.error().message);
  auto key = Ed25519PublicKey::from_pem(*pem);  // checked by add_trusted_key
  if (!key) return report(public_key.string() + ": " + key.error().message);
  const json summary = {
      {"trust", trust_file.string()}, {"role", role_name}, {"name", name}, {"keyid", key->keyid()}};
  std::cout << summary.dump(-1, ' ', false, json::error_handler_t::replace) << "\n" << std::flush;
  return kOk;
}

}  // namespace driftwatch::app
