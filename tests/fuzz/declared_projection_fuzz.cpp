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
//   - the same for the config with one node (picked by a hash of the input)
//     replaced by a value of each JSON type in turn: byte mutations seldom
//     turn an object into a number, which is what a missed check trips on;
//   - no_new_privileges and root_readonly are what the config states;
//   - a projection canonicalises (it is what gets hashed), and computing it
//     twice gives the same bytes.

#include <cstddef>
#include <cstdint>
#include <string>
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

void check_error(const driftwatch::Error& error, std::string_view text) {
  if (error.message.empty()) report("an error without a message", text);
  if (std::string_view(error.message).starts_with(kUncheckedAccess))
    report("a JSON access without a type check threw", error.message + " on " + std::string(text));
}

// One node of the config replaced by a value of each JSON type in turn
// (fuzz_support.hpp): the projection still ends in a value or a checked error.
void check_type_flips(std::string_view text) {
  driftwatch::fuzz::for_each_type_flip(text, [](const std::string& flipped) {
    auto doc = driftwatch::parse_json(flipped, "flipped config");
    if (!doc) return;
    auto declared = driftwatch::projection::declared_projection(*doc);
    if (!declared) check_error(declared.error(), flipped);
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = driftwatch::parse_json(text, "fuzz input");
  if (!doc) return 0;
  auto declared = driftwatch::projection::declared_projection(*doc);
  check_type_flips(text);
  if (!declared) {
    check_error(declared.error(), text);
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
