#pragma once
// Fetching an evidence log served over HTTP (`driftwatch verify --url`,
// `report --url`): a blocking HTTP/1.1 GET client for the static tlog-tiles
// API, run on an auditor's machine, not in the confined daemon.
//
// One kept-alive connection carries every request (a verifier fetches
// thousands of tiles); it is opened again when the server closes it. Each
// stage has a deadline, so a server that stops answering costs seconds, not
// forever; a body is read up to the caller's limit and no further; redirects
// are not followed (a log that moved is the auditor's call, not ours).
// https is not supported yet: the error says so and what to do instead.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace driftwatch::evidence {

/// How long a fetch may wait for the server.
struct FetchTimeouts {
  /// Resolving aside (the system resolver has its own), until connected.
  std::chrono::steady_clock::duration connect = std::chrono::seconds(10);
  /// The most time without progress while the request is sent or the
  /// answer read: a server that goes silent for this long fails the fetch.
  std::chrono::steady_clock::duration read = std::chrono::seconds(10);
  /// One whole request and answer, however the server paces its bytes.
  std::chrono::steady_clock::duration request = std::chrono::minutes(5);
};

class HttpFetcher {
 public:
  /// A fetcher for the log at `base_url`, "http://HOST[:PORT][/PREFIX/]"
  /// (HOST a name, an IPv4 address or a bracketed IPv6 one; PORT 80 when
  /// not given; a missing trailing '/' is added). Nothing is resolved or
  /// connected yet. Errors name the URL: https:// ("https is not supported
  /// yet; fetch the directory with curl or serve it over http"), another
  /// scheme, user info, a query or fragment, a bad port.
  static Result<HttpFetcher> for_url(std::string_view base_url, FetchTimeouts timeouts = {});

  HttpFetcher(HttpFetcher&&) noexcept;
  HttpFetcher& operator=(HttpFetcher&&) noexcept;
  HttpFetcher(const HttpFetcher&) = delete;
  HttpFetcher& operator=(const HttpFetcher&) = delete;
  ~HttpFetcher();

  /// GET base_url + relative_path ("tile/0/x001/234", plain names joined by
  /// '/', of the characters A-Z a-z 0-9 . _ ~ - only). 200: the body, of at
  /// most `max_bytes` (a longer one is an error, and is not read past the
  /// limit); 404: nullopt. Anything else is an error naming the URL: a
  /// status ("HTTP 500 Internal Server Error"), a redirect (naming its
  /// Location), a Content-Encoding other than identity, a refused
  /// connection, a deadline of `FetchTimeouts` passed. A kept-alive
  /// connection the server closed meanwhile is opened again, once. Blocks;
  /// not thread-safe.
  Result<std::optional<std::string>> get(std::string_view relative_path, std::size_t max_bytes);

  /// The base URL, with its trailing '/'.
  const std::string& base_url() const;
  /// Connections opened so far: 1 for any number of gets while the server
  /// keeps the connection alive.
  uint64_t connections_opened() const;

 private:
  struct Impl;
  explicit HttpFetcher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace driftwatch::evidence
