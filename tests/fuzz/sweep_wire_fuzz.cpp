// libFuzzer target: the sampler/front protocol (correlate/wire.hpp), which
// each process reads from the other and must survive whatever a compromised
// peer sends: the byte stream through FrameReader, and every frame's JSON
// through parse_request, parse_sample, parse_response and parse_hello (and
// the proc peer's parse_peer_request, parse_peer_response, parse_peer_hello).
//
// The input is a byte stream of frames (4-byte big-endian length, JSON). So
// that mutations which break a length still reach the parsers, the bytes
// after the first 4 are also parsed as one JSON document directly.
//
// Checks, for any input bytes:
//   - FrameReader never throws; fed the stream in pieces (sizes picked by a
//     hash of the input) it returns the same frames, and ends in the same
//     error or pending state, as fed all at once; after an error it stays
//     failed;
//   - no parser throws, and each error says something;
//   - a document a parser accepts is its canonical form: to_json of the
//     value equals the document, and that value framed, read back and
//     parsed again gives the same JSON;
//   - for an accepted response, the front's side works on it: the observed
//     projection of every sample (to_sweep_item) in the default scope and in
//     an empty one, and check_answers against a sweep and a sample_one;
//   - fit_to_limits changes nothing in a response or request that parsed;
//   - all of this for each document with one node replaced by a value of
//     each JSON type in turn (type flips, fuzz_support.hpp).
//
// Seeds (corpus-sweep_wire/) are frames as the processes write them: a
// hello followed by a sweep response, a request with scopes, a failed
// sample_one response; the proc peer's messages are checked on each too.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/canonical_json.hpp"
#include "correlate/wire.hpp"
#include "fuzz_support.hpp"

namespace wire = driftwatch::correlate::wire;
using nlohmann::json;

namespace {

[[noreturn]] void report(const char* what, std::string_view detail = {}) {
  driftwatch::fuzz::report("sweep_wire_fuzz", what, detail);
}

std::string shown(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

// The value framed and read back.
json through_a_frame(const json& value) {
  wire::FrameReader reader;
  reader.feed(wire::encode_frame(value));
  auto frame = reader.next();
  if (!frame || !*frame) report("an encoded frame does not read back", shown(value));
  if (reader.buffered() != 0) report("an encoded frame left bytes behind", shown(value));
  return std::move(**frame);
}

// Accepted `document` as `value`: it is the value's canonical form, and
// reads back through a frame as the same value.
template <class Value, class Parse>
void check_canonical(const json& document, const Value& value, Parse parse, const char* kind) {
  const json written = wire::to_json(value);
  if (written != document) {
    report("an accepted document is not what to_json writes of it",
           std::string(kind) + ": " + shown(document) + " became " + shown(written));
  }
  auto again = parse(through_a_frame(written));
  if (!again) report("to_json wrote what does not parse again", again.error().message);
  if (wire::to_json(*again) != written) report("a value changed through a frame", shown(written));
}

template <class Parsed>
void check_error(const Parsed& parsed, const json& document) {
  if (!parsed && parsed.error().message.empty())
    report("a parser failed without a message", shown(document));
}

void check_response(const json& document, wire::Response response) {
  check_canonical(document, response, wire::parse_response, "response");
  for (const auto& sample : response.items) {
    // The front's side: errors are fine (an empty scope finds less), a
    // crash is not.
    (void)wire::to_sweep_item(sample, driftwatch::projection::default_scope());
    (void)wire::to_sweep_item(sample, driftwatch::projection::ObservationScope{});
  }
  wire::Request sweep;
  sweep.id = response.id;
  const bool sweep_ok = wire::check_answers(sweep, response).has_value();
  if (sweep_ok == response.error.has_value())
    report("check_answers misjudged a sweep's response", shown(document));
  wire::Request one;
  one.id = response.id;
  one.op = wire::Request::Op::sample_one;
  one.sandbox_id = response.items.empty() ? "x" : response.items[0].ref.sandbox_id;
  const bool one_ok = wire::check_answers(one, response).has_value();
  if (one_ok != (response.error.has_value() || response.items.size() == 1))
    report("check_answers misjudged a sample_one's response", shown(document));

  // A response that parsed fits already: fitting it changes nothing.
  wire::fit_to_limits(response);
  if (wire::to_json(response) != document)
    report("fit_to_limits changed a response that fit", shown(document));
}

// Every parser on one document.
void check_document(const json& document) {
  auto request = wire::parse_request(document);
  check_error(request, document);
  if (request) {
    check_canonical(document, *request, wire::parse_request, "request");
    auto fitted = *request;
    if (!wire::fit_to_limits(fitted).empty())
      report("fit_to_limits dropped a scope of a request that parsed", shown(document));
  }

  auto sample = wire::parse_sample(document);
  check_error(sample, document);
  if (sample) {
    check_canonical(document, *sample, wire::parse_sample, "sample");
    (void)wire::to_sweep_item(*sample, driftwatch::projection::default_scope());
  }

  auto response = wire::parse_response(document);
  check_error(response, document);
  if (response) check_response(document, std::move(*response));

  auto hello = wire::parse_hello(document);
  check_error(hello, document);
  if (hello) check_canonical(document, *hello, wire::parse_hello, "hello");

  // The sampler and its proc peer.
  auto peer_request = wire::parse_peer_request(document);
  check_error(peer_request, document);
  if (peer_request) {
    check_canonical(document, *peer_request, wire::parse_peer_request, "peer request");
    // Answers to it as the peer makes them parse back against it.
    wire::PeerResponse answer;
    answer.id = peer_request->id;
    if (peer_request->op == wire::PeerRequest::Op::links)
      answer.links.assign(peer_request->links.size(), driftwatch::observe::LinkRead{2, ""});
    else
      answer.root_view = driftwatch::sandbox::RootView{
          true, false,
          std::vector<driftwatch::sandbox::PathState>(peer_request->paths.size(),
                                                      driftwatch::sandbox::PathState::absent)};
    auto parsed = wire::parse_peer_response(through_a_frame(wire::to_json(answer)), *peer_request);
    if (!parsed)
      report("a peer's answer does not parse against its request", parsed.error().message);
  }
  // Against a fixed request of each op.
  wire::PeerRequest links;
  links.id = 1;
  links.links = {{1, "ns/pid"}, {1, "exe"}};
  wire::PeerRequest view;
  view.id = 1;
  view.op = wire::PeerRequest::Op::root_view;
  view.pid = 1;
  view.paths = {"/proc/kcore"};
  for (const auto* request : {&links, &view}) {
    auto response = wire::parse_peer_response(document, *request);
    check_error(response, document);
    if (response && wire::to_json(*response) != document)
      report("an accepted peer response is not what to_json writes of it", shown(document));
  }
  auto peer_hello = wire::parse_peer_hello(document);
  check_error(peer_hello, document);
  if (peer_hello) check_canonical(document, *peer_hello, wire::parse_peer_hello, "peer hello");
}

// What a reader returns until it needs more bytes or fails.
struct Drained {
  std::vector<json> frames;
  std::optional<std::string> error;
};

void drain(wire::FrameReader& reader, Drained& out) {
  while (!out.error) {
    auto next = reader.next();
    if (!next) {
      if (next.error().message.empty()) report("a frame error without a message");
      out.error = next.error().message;
      auto again = reader.next();
      if (again || again.error().message != *out.error)
        report("a failed frame reader did not stay failed", *out.error);
      return;
    }
    if (!*next) return;
    out.frames.push_back(std::move(**next));
  }
}

void check_stream(std::string_view bytes) {
  wire::FrameReader whole;
  whole.feed(bytes);
  Drained at_once;
  drain(whole, at_once);

  uint64_t hash = 1469598103934665603ull;  // FNV-1a, as fuzz_support.hpp
  for (const unsigned char c : bytes) hash = (hash ^ c) * 1099511628211ull;
  wire::FrameReader pieces;
  Drained in_pieces;
  for (std::size_t at = 0; at < bytes.size() && !in_pieces.error;) {
    hash = hash * 6364136223846793005ull + 1442695040888963407ull;
    const std::size_t size = 1 + (hash >> 33) % 64;
    pieces.feed(bytes.substr(at, size));
    at += size;
    drain(pieces, in_pieces);
  }
  if (at_once.frames != in_pieces.frames || at_once.error != in_pieces.error) {
    report("a stream fed in pieces gave other frames than fed at once",
           at_once.error.value_or("") + " / " + in_pieces.error.value_or(""));
  }
  for (const auto& frame : at_once.frames) check_document(frame);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_stream(bytes);

  if (bytes.size() < wire::kFrameHeaderBytes) return 0;
  const std::string_view body = bytes.substr(wire::kFrameHeaderBytes);
  if (auto document = driftwatch::parse_json(body, "fuzz input")) check_document(*document);
  driftwatch::fuzz::for_each_type_flip(body, [](const std::string& flipped) {
    if (auto document = driftwatch::parse_json(flipped, "flipped input")) check_document(*document);
  });
  return 0;
}
