#pragma once
// What the sampler and observed-projection unit tests share: unwrapping a
// Result that must hold a value, and the namespace inodes of a host.

#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include <catch2/catch.hpp>

#include "common/result.hpp"

namespace driftwatch::testing {

/// The value of `result`; fails the test with its error otherwise.
template <class T>
T ok(Result<T> result) {
  INFO((result ? std::string() : result.error().message));
  REQUIRE(result.has_value());
  return std::move(*result);
}

/// Namespace inodes of the host (PID 1's), as /proc/PID/ns/* shows them.
inline const std::map<std::string, uint64_t> kHostNamespaces = {
    {"cgroup", 4026531835}, {"ipc", 4026531839},  {"mnt", 4026531832},  {"net", 4026531833},
    {"pid", 4026531836},    {"time", 4026531834}, {"user", 4026531837}, {"uts", 4026531838}};

}  // namespace driftwatch::testing
