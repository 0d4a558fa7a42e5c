// libFuzzer target: the node configuration of `driftwatch run --config FILE`
// (parse_node_config).
//
// Checks, for any input bytes:
//   - parse gives a config or an error that says something;
//   - every key the document gives is in effect as given, and only known
//     keys are accepted;
//   - a config's effective document (to_json, whose hash is
//     driftwatch_config_info) canonicalises, parses as a config again and
//     gives the same document: the effective config is a fixed point;
//   - the listen address parses, the intervals are positive;
//   - all of this for the config with one node replaced by a value of each
//     JSON type in turn, too (type flips, fuzz_support.hpp).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "api/http_server.hpp"
#include "app/node_config.hpp"
#include "common/canonical_json.hpp"
#include "fuzz_support.hpp"

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("node_config_fuzz", what, detail);
}

void check_config(std::string_view text) {
  auto config = driftwatch::app::parse_node_config(text, "config fuzz.json");
  if (!config) {
    if (config.error().message.empty()) report("parse failed without a message", text);
    return;
  }
  if (!driftwatch::api::parse_listen_address(config->listen))
    report("an unparsable listen address was accepted", config->listen);
  if (config->sweep_interval_seconds <= 0 || config->checkpoint_interval_seconds <= 0)
    report("a non-positive interval was accepted", text);

  const auto effective = driftwatch::app::to_json(*config);
  // Every key the document gives is in effect as given (no key ignored,
  // none rewritten); the others keep their defaults.
  auto doc = driftwatch::parse_json(text, "config");
  if (!doc || !doc->is_object()) report("parse accepted what is not a JSON object", text);
  for (const auto& [key, value] : doc->items()) {
    if (!effective.contains(key)) report("an unknown key was accepted", key);
    if (key == "discovery") {
      for (const auto& [sub, sub_value] : value.items())
        if (!effective[key].contains(sub) || effective[key][sub] != sub_value)
          report("a discovery key is not in effect as given", sub);
    } else if (effective[key] != value) {
      report("a key is not in effect as given", key + ": " + value.dump());
    }
  }

  auto canonical = driftwatch::canonical_json(effective);
  if (!canonical) report("the effective config does not canonicalise", canonical.error().message);
  auto again = driftwatch::app::parse_node_config(*canonical, "effective config");
  if (!again) report("the effective config does not parse as a config", again.error().message);
  auto canonical_again = driftwatch::canonical_json(driftwatch::app::to_json(*again));
  if (!canonical_again || *canonical_again != *canonical)
    report("the effective config is not a fixed point", *canonical);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check_config(text);
  // The same for the config with one node replaced by each JSON type.
  driftwatch::fuzz::for_each_type_flip(text,
                                       [](const std::string& flipped) { check_config(flipped); });
  return 0;
}
