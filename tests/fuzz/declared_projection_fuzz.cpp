// libFuzzer target: an OCI config from outside (a launch event, a bundle's
// config.json) through the strict parser into the declared projection. Any
// input must give a projection or an error, never a crash; a projection must
// canonicalise (it is what gets hashed).

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "common/canonical_json.hpp"
#include "projection/declared.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto doc = driftwatch::parse_json(text, "fuzz input");
  if (!doc) return 0;
  auto declared = driftwatch::projection::declared_projection(*doc);
  if (!declared) {
    if (declared.error().message.empty()) std::abort();
    return 0;
  }
  auto bytes = driftwatch::canonical_json(driftwatch::projection::to_json(*declared));
  if (!bytes) std::abort();
  return 0;
}
