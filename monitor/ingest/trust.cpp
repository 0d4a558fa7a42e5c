#include "ingest/trust.hpp"

#include "common/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "common/canonical_json.hpp"

namespace driftwatch::ingest {
namespace {

using nlohmann::json;

// A trust file lists a handful of PEM keys; anything near this size is not one.
constexpr size_t kMaxTrustFileBytes = 1 << 20;

std::string short_keyid(std::string_view keyid) {
  return std::string(keyid.substr(0, 12)) + "…";
}

}  // namespace

std::string to_string(TrustRole role) {
  return role == TrustRole::control_plane ? "control_plane" : "operator";
}

Result<TrustStore> TrustStore::parse(std::string_view text, std::string_view what) {
  DW_TRY(doc, parse_json(text, what));
  if (!doc.is_object()) {
    return fail(what,
                ": a trust file is a JSON object {\"control_plane\": [...], "
                "\"operator\": [...]}, not a ",
                doc.type_name());
  }
  for (const auto& [key, value] : doc.items()) {
    if (key != "control_plane" && key != "operator") {
      return fail(what, ": unknown key \"", key, "\" (allowed: control_plane, operator)");
    }
  }

  TrustStore store;
  std::map<std::string, std::string, std::less<>> names;  // name -> role, across both roles
  for (const TrustRole role : {TrustRole::control_plane, TrustRole::operator_}) {
    const std::string role_name = to_string(role);
    const auto list = doc.find(role_name);
    if (list == doc.end()) continue;  // a role nobody holds
    if (!list->is_array()) {
      return fail(what, ": \"", role_name, "\" must be an array of {\"name\", \"public_key_pem\"}");
    }
    for (size_t i = 0; i < list->size(); ++i) {
      const json& entry = (*list)[i];
      const std::string where =
          std::string(what) + ": " + role_name + "[" + std::to_string(i) + "]";
      if (!entry.is_object()) {
        return fail(where, " must be an object {\"name\", \"public_key_pem\"}");
      }
      for (const auto& [key, value] : entry.items()) {
        if (key != "name" && key != "public_key_pem") {
          return fail(where, " has an unknown key \"", key, "\" (allowed: name, public_key_pem)");
        }
      }
      const auto name = entry.find("name");
      if (name == entry.end() || !name->is_string() ||
          name->get_ref<const std::string&>().empty()) {
        return fail(where, " needs a non-empty \"name\" string");
      }
      const std::string& key_name = name->get_ref<const std::string&>();
      const std::string named = where + " (" + key_name + ")";
      const auto pem = entry.find("public_key_pem");
      if (pem == entry.end() || !pem->is_string()) {
        return fail(named, " needs a \"public_key_pem\" string");
      }
      auto key = Ed25519PublicKey::from_pem(pem->get_ref<const std::string&>());
      if (!key) return wrap(key.error(), named, ": ");

      if (const auto earlier = names.find(key_name); earlier != names.end()) {
        return fail(named, ": the name \"", key_name, "\" is already used in ", earlier->second,
                    "; every key needs its own name");
      }
      std::string keyid = key->keyid();
      if (const TrustedKey* other = store.find(keyid)) {
        if (other->role != role) {
          return fail(named, ": key ", short_keyid(keyid), " is also listed in ",
                      to_string(other->role), " (", other->name,
                      "); a key may hold only one role, so that no launch key can sign grants "
                      "and no operator key can sign launches");
        }
        return fail(named, ": key ", short_keyid(keyid), " is listed twice in ", role_name,
                    " (also as ", other->name, ")");
      }
      names.emplace(key_name, role_name);
      store.keys_.emplace(keyid, TrustedKey{key_name, role, keyid, std::move(*key)});
    }
  }
  return store;
}

Result<TrustRole> parse_trust_role(std::string_view name) {
  if (name == "control_plane") return TrustRole::control_plane;
  if (name == "operator") return TrustRole::operator_;
  return fail("unknown trust role \"", name,
              "\" (control_plane: may sign launch events; operator: may sign grants)");
}

Result<std::string> add_trusted_key(const std::optional<std::string>& existing, TrustRole role,
                                    const std::string& name, const std::string& public_key_pem) {
  json doc = json::object();
  if (existing) {
    // Checked whole first: a key is never added to a file that does not load.
    DW_TRY(store, TrustStore::parse(*existing, "the trust file"));
    (void)store;
    DW_TRY(parsed, parse_json(*existing, "the trust file"));
    doc = std::move(parsed);
  }
  if (public_key_pem.find("PRIVATE KEY-----") != std::string::npos)
    return fail("key \"", name,
                "\" is a private key: a trust file holds public keys only (NAME.pub from "
                "driftwatch keygen); keep the private key where it signs");
  auto key = Ed25519PublicKey::from_pem(public_key_pem);
  if (!key) return wrap(key.error(), "key \"", name, "\": ");
  const std::string role_name = to_string(role);
  if (!doc.contains(role_name)) doc[role_name] = json::array();
  doc[role_name].push_back(json{{"name", name}, {"public_key_pem", public_key_pem}});
  std::string text = doc.dump(2) + "\n";
  // The same rules as at load: one role per key, one key per name.
  DW_TRY(checked, TrustStore::parse(text, "the trust file with \"" + name + "\" added"));
  (void)checked;
  return text;
}

Result<TrustStore> TrustStore::load(const std::filesystem::path& path) {
  // Named by configuration: never followed through a link, never waited on
  // (a FIFO), refused unless a regular file.
  DW_TRY(text, read_regular_file(path, kMaxTrustFileBytes, "trust file"));
  return parse(text, path.string());
}

const TrustedKey* TrustStore::find(std::string_view keyid) const {
  const auto it = keys_.find(keyid);
  return it == keys_.end() ? nullptr : &it->second;
}

size_t TrustStore::count(TrustRole role) const {
  size_t n = 0;
  for (const auto& [keyid, key] : keys_) n += key.role == role ? 1 : 0;
  return n;
}

}  // namespace driftwatch::ingest
