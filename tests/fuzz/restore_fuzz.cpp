// libFuzzer target: what a restart reads from state_dir besides the log
// itself: the restore point (parse_restore_point, evidence/restore.hpp), a
// journal_position entry (parse_journal_position) and
// the accepted store of earlier versions (parse_legacy_store,
// ingest/legacy_store.hpp): what a damaged disk or a hand edit can
// leave in any state.
//
// Checks, for any input bytes:
//   - a restore point or an error, never an exception; an accepted one has
//     ascending indexes below its tree size, and encodes back to a document
//     that parses to the same point;
//   - a legacy store always parses: every complete line is an envelope, a
//     skipped line or a recovery record, the torn tail is what follows the
//     last newline, and every `where` names a line that exists.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "evidence/restore.hpp"
#include "fuzz_support.hpp"
#include "ingest/legacy_store.hpp"

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("restore_fuzz", what, detail);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  namespace evidence = driftwatch::evidence;

  if (auto point = evidence::parse_restore_point(text)) {
    for (size_t i = 0; i < point->accepted.size(); ++i) {
      if (point->accepted[i] >= point->tree_size) report("an index not below the tree size");
      if (i > 0 && point->accepted[i] <= point->accepted[i - 1]) report("indexes not ascending");
    }
    const std::string encoded = evidence::encode_restore_point(*point);
    auto again = evidence::parse_restore_point(encoded);
    if (!again) report("an encoded restore point does not parse", again.error().message);
    if (again->tree_size != point->tree_size || again->root != point->root ||
        again->accepted != point->accepted || again->positions != point->positions)
      report("a restore point does not survive encoding", encoded);
    for (uint64_t index : point->positions)
      if (std::binary_search(point->accepted.begin(), point->accepted.end(), index))
        report("an index both accepted and a journal position");
  } else if (point.error().message.empty()) {
    report("a refused restore point without a reason");
  }

  // A journal_position entry: what parses is within bounds.
  if (auto position = evidence::parse_journal_position(text))
    if (position->preceding && position->preceding->size() > 64)
      report("more than 64 bytes before a journal position");

  const auto store = driftwatch::ingest::parse_legacy_store(text, "accepted.jsonl");
  const size_t newline = text.rfind('\n');
  const size_t torn = newline == std::string_view::npos ? text.size() : text.size() - newline - 1;
  if (store.torn_bytes != torn) report("the torn tail is not what follows the last newline");
  size_t lines = 0;
  for (char c : text.substr(0, text.size() - torn)) lines += c == '\n';
  if (store.envelopes.size() + store.skipped.size() > lines)
    report("more envelopes and skipped lines than lines");
  for (const auto& envelope : store.envelopes) {
    const std::string_view where = envelope.where;
    const size_t space = where.rfind(' ');
    if (!where.starts_with("accepted.jsonl line ") || space == std::string_view::npos ||
        std::stoull(std::string(where.substr(space + 1))) > lines)
      report("an envelope names a line that does not exist", where);
  }
  return 0;
}
