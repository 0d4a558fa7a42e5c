// libFuzzer target for parse_json and canonical_json.
//
// Checks, for any input bytes:
//   - parse_json returns a value or an error that says something; never
//     crashes, hangs or recurses without bound;
//   - for a parsed value, canonical_json succeeds: parse_json admits only
//     what JCS can write (valid UTF-8, finite numbers, no duplicate keys,
//     depth <= 64), so a failure here means the two disagree;
//   - the canonical form is a fixed point:
//     canonical_json(parse_json(canonical_json(x))) == canonical_json(x).
//
// Built with -DDRIFTWATCH_FUZZ_STANDALONE it gets a main() that runs each
// file named on the command line once (or stdin when none is), so that a
// compiler without libFuzzer can replay a corpus or a crash input.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/canonical_json.hpp"

namespace {

// parse_json's input limit; canonical text can be longer than its source
// ("1e20" becomes 21 digits), and then cannot be read back by design.
constexpr std::size_t kMaxInputBytes = std::size_t{4} * 1024 * 1024;

[[noreturn]] void report(const char* what, std::string_view detail) {
  std::fprintf(stderr, "canonical_json_fuzz: %s: %.*s\n", what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto value = driftwatch::parse_json(text, "fuzz input");
  if (!value) {
    if (value.error().message.empty()) report("parse_json failed without a message", text);
    return 0;
  }

  const auto once = driftwatch::canonical_json(*value);
  if (!once) report("canonical_json rejected a value parse_json accepted", once.error().message);
  if (once->size() > kMaxInputBytes) return 0;

  const auto reparsed = driftwatch::parse_json(*once, "canonical form");
  if (!reparsed) report("parse_json rejected canonical output", reparsed.error().message);
  const auto twice = driftwatch::canonical_json(*reparsed);
  if (!twice) report("canonical_json failed on its own output", twice.error().message);
  if (*twice != *once) report("canonical form is not a fixed point", *once + " -> " + *twice);
  return 0;
}

#ifdef DRIFTWATCH_FUZZ_STANDALONE
#include <fstream>
#include <iostream>
#include <iterator>

int main(int argc, char** argv) {
  const auto run = [](const std::string& bytes) {
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  };
  if (argc < 2) {
    run(std::string(std::istreambuf_iterator<char>(std::cin), {}));
    return 0;
  }
  for (int i = 1; i < argc; ++i) {
    std::ifstream file(argv[i], std::ios::binary);
    if (!file) {
      std::fprintf(stderr, "canonical_json_fuzz: cannot open %s\n", argv[i]);
      return 1;
    }
    run(std::string(std::istreambuf_iterator<char>(file), {}));
  }
  std::fprintf(stderr, "canonical_json_fuzz: ran %d inputs\n", argc - 1);
  return 0;
}
#endif
