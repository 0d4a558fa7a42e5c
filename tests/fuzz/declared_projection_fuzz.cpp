// libFuzzer target: an OCI config from outside (a launch event, a bundle's
// config.json) through the strict parser into the declared projection.
//
// Checks, for any input bytes:
//   - a projection or an error that says something, never a crash or an
//     exception;
//   - not even one caught by declared_projection's last-resort catch: that
//     catch keeps a missed type check from taking the daemon down, but the
//     check was still missed (the error then reads "OCI config cannot be
//     projected: " and a nlohmann message), so here it counts as a crash;
//   - no_new_privileges and root_readonly are what the config states;
//   - a projection canonicalises (it is what gets hashed), and computing it
//     twice gives the same bytes.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/canonical_json.hpp"
#include "fuzz_support.hpp"
#include "projection/declared.hpp"

namespace {

// The prefix of declared_projection's catch-all (monitor/projection/declared.cpp).
constexpr std::string_view kUncheckedAccess = "OCI config cannot be projected: ";

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("declared_projection_fuzz", what, detail);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = driftwatch::parse_json(text, "fuzz input");
  if (!doc) return 0;
  auto declared = driftwatch::projection::declared_projection(*doc);
  if (!declared) {
    const std::string& message = declared.error().message;
    if (message.empty()) report("an error without a message", text);
    if (std::string_view(message).starts_with(kUncheckedAccess))
      report("a JSON access without a type check threw", message);
    return 0;
  }
  // Fields the OCI config states directly (absent: false) come out as stated.
  const auto stated = [&](const char* object, const char* key) {
    const auto o = doc->find(object);
    if (o == doc->end() || !o->is_object()) return false;
    const auto v = o->find(key);
    return v != o->end() && v->is_boolean() && v->get<bool>();
  };
  if (declared->no_new_privileges != stated("process", "noNewPrivileges"))
    report("no_new_privileges is not process.noNewPrivileges", text);
  if (declared->root_readonly != stated("root", "readonly"))
    report("root_readonly is not root.readonly", text);

  auto bytes = driftwatch::canonical_json(driftwatch::projection::to_json(*declared));
  if (!bytes) report("a projection does not canonicalise", bytes.error().message);
  auto again = driftwatch::projection::declared_projection(*doc);
  if (!again || *again != *declared) report("the projection is not deterministic", text);
  return 0;
}
