#pragma once
// The one error model of driftwatch: Result<T> for anything that can go wrong
// in normal operation (a process exits mid-read, a file does not parse, an
// input is bad). Exceptions never cross a module boundary.

#include <expected>
#include <string>
#include <utility>

namespace driftwatch {

/// What went wrong, as one readable sentence naming the input.
/// `vanished` marks the benign race of a process exiting while it was read;
/// callers that sample many processes drop such members instead of failing.
struct Error {
  std::string message;
  bool vanished = false;
};

template <class T>
using Result = std::expected<T, Error>;

/// Shorthand for returning an error: `return fail("cannot read ", path);`
template <class... Parts>
std::unexpected<Error> fail(Parts&&... parts) {
  std::string message;
  (message.append(std::forward<Parts>(parts)), ...);
  return std::unexpected<Error>(Error{std::move(message)});
}

/// An error for a process that exited while we sampled it.
inline std::unexpected<Error> vanished(std::string message) {
  return std::unexpected<Error>(Error{std::move(message), true});
}

/// Prefixes context to an error on the way up: `return wrap(r, "sandbox ", id, ": ")`.
template <class... Parts>
std::unexpected<Error> wrap(const Error& inner, Parts&&... parts) {
  std::string message;
  (message.append(std::forward<Parts>(parts)), ...);
  message += inner.message;
  return std::unexpected<Error>(Error{std::move(message), inner.vanished});
}

}  // namespace driftwatch

/// Unwraps a Result into `var`, or returns its error from the enclosing
/// function (which must return a Result): `DW_TRY(status, reader.status(pid));`
#define DW_TRY(var, expr)                                            \
  auto var##_result_ = (expr);                                       \
  if (!var##_result_) return std::unexpected(var##_result_.error()); \
  auto var = std::move(*var##_result_)
