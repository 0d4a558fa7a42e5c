// libFuzzer target: trust.json (TrustStore::parse) and the PEM public keys in
// it (Ed25519PublicKey::from_pem).
//
// Checks, for any input bytes:
//   - parse gives a store or an error that says something;
//   - for a store, the document has only the two roles and entries only
//     {name, public_key_pem} with a non-empty name; every entry is in the
//     store under its key id, with its name and role; no key is in both
//     roles and no name is used
//     twice (DESIGN.md: a key in both lists is refused at load); the role
//     counts add up to the size;
//   - the same for the document with one node replaced by a value of each
//     JSON type in turn (type flips, fuzz_support.hpp);
//   - a PEM key that from_pem accepts has a 64-digit lowercase hex key id,
//     and reads back from its own PEM and raw bytes as the same key.

#include <cstddef>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "fuzz_support.hpp"
#include "ingest/trust.hpp"

namespace ingest = driftwatch::ingest;
using driftwatch::Ed25519PublicKey;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("trust_fuzz", what, detail);
}

bool is_keyid(const std::string& keyid) {
  if (keyid.size() != 64) return false;
  for (char c : keyid)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

void check_key(std::string_view pem) {
  auto key = Ed25519PublicKey::from_pem(pem);
  if (!key) {
    if (key.error().message.empty()) report("from_pem failed without a message", pem);
    return;
  }
  if (!is_keyid(key->keyid())) report("a key id is not 64 lowercase hex digits", key->keyid());
  auto again = Ed25519PublicKey::from_pem(key->pem());
  if (!again || again->keyid() != key->keyid()) report("a key's own PEM does not read back", pem);
  auto raw = Ed25519PublicKey::from_raw(key->raw());
  if (!raw || raw->keyid() != key->keyid()) report("a key's raw bytes do not read back", pem);
}

void check_store(std::string_view text) {
  auto store = ingest::TrustStore::parse(text, "trust.json");
  if (!store) {
    if (store.error().message.empty()) report("parse failed without a message", text);
    return;
  }
  if (store->count(ingest::TrustRole::control_plane) + store->count(ingest::TrustRole::operator_) !=
      store->size())
    report("role counts do not add up to the size", text);

  // What the document says, read independently of the parser.
  auto doc = driftwatch::parse_json(text, "trust.json");
  if (!doc || !doc->is_object()) report("parse accepted what is not a JSON object", text);
  for (const auto& [key, value] : doc->items())
    if (key != "control_plane" && key != "operator") report("an unknown role was accepted", key);
  std::map<std::string, ingest::TrustRole> roles_by_keyid;
  std::set<std::string> names;
  size_t entries = 0;
  for (const auto role : {ingest::TrustRole::control_plane, ingest::TrustRole::operator_}) {
    const auto list = doc->find(ingest::to_string(role));
    if (list == doc->end()) continue;
    if (!list->is_array()) report("a role that is not an array was accepted", text);
    for (const auto& entry : *list) {
      if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() ||
          !entry.contains("public_key_pem") || !entry["public_key_pem"].is_string())
        report("an entry without a name or key string was accepted", text);
      for (const auto& [key, value] : entry.items())
        if (key != "name" && key != "public_key_pem")
          report("an unknown entry key was accepted", key);
      ++entries;
      const std::string name = entry["name"].get<std::string>();
      if (name.empty()) report("an entry with an empty name was accepted", text);
      auto key = Ed25519PublicKey::from_pem(entry["public_key_pem"].get<std::string>());
      if (!key) report("an entry whose key does not parse was accepted", text);
      if (!names.insert(name).second) report("a name used twice was accepted", name);
      if (!roles_by_keyid.emplace(key->keyid(), role).second)
        report("a key listed twice (or in both roles) was accepted", key->keyid());
      const ingest::TrustedKey* found = store->find(key->keyid());
      if (found == nullptr) report("an entry is not in the store", name);
      if (found->name != name || found->role != role || found->keyid != key->keyid())
        report("an entry is in the store under another name or role", name);
    }
  }
  if (entries != store->size()) report("the store holds other keys than the document", text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_store(text);
  check_key(text);
  // The same for the document with one node replaced by each JSON type.
  driftwatch::fuzz::for_each_type_flip(text,
                                       [](const std::string& flipped) { check_store(flipped); });
  return 0;
}
