#include "observe/capabilities.hpp"

#include <algorithm>
#include <array>
#include <charconv>

namespace driftwatch::observe {
namespace {

// Indexed by bit number, spelled as in <linux/capability.h>.
constexpr std::array<std::string_view, kLastCapability + 1> kCapabilityNames = {
    "CAP_CHOWN",               // 0
    "CAP_DAC_OVERRIDE",        // 1
    "CAP_DAC_READ_SEARCH",     // 2
    "CAP_FOWNER",              // 3
    "CAP_FSETID",              // 4
    "CAP_KILL",                // 5
    "CAP_SETGID",              // 6
    "CAP_SETUID",              // 7
    "CAP_SETPCAP",             // 8
    "CAP_LINUX_IMMUTABLE",     // 9
    "CAP_NET_BIND_SERVICE",    // 10
    "CAP_NET_BROADCAST",       // 11
    "CAP_NET_ADMIN",           // 12
    "CAP_NET_RAW",             // 13
    "CAP_IPC_LOCK",            // 14
    "CAP_IPC_OWNER",           // 15
    "CAP_SYS_MODULE",          // 16
    "CAP_SYS_RAWIO",           // 17
    "CAP_SYS_CHROOT",          // 18
    "CAP_SYS_PTRACE",          // 19
    "CAP_SYS_PACCT",           // 20
    "CAP_SYS_ADMIN",           // 21
    "CAP_SYS_BOOT",            // 22
    "CAP_SYS_NICE",            // 23
    "CAP_SYS_RESOURCE",        // 24
    "CAP_SYS_TIME",            // 25
    "CAP_SYS_TTY_CONFIG",      // 26
    "CAP_MKNOD",               // 27
    "CAP_LEASE",               // 28
    "CAP_AUDIT_WRITE",         // 29
    "CAP_AUDIT_CONTROL",       // 30
    "CAP_SETFCAP",             // 31
    "CAP_MAC_OVERRIDE",        // 32
    "CAP_MAC_ADMIN",           // 33
    "CAP_SYSLOG",              // 34
    "CAP_WAKE_ALARM",          // 35
    "CAP_BLOCK_SUSPEND",       // 36
    "CAP_AUDIT_READ",          // 37
    "CAP_PERFMON",             // 38
    "CAP_BPF",                 // 39
    "CAP_CHECKPOINT_RESTORE",  // 40
};

constexpr std::string_view kPrefix = "CAP_";
constexpr int kMaskBits = 64;

// "CAP_41" .. "CAP_63": the form capability_name gives bits a newer kernel
// knows and this build does not, accepted back so that names round-trip.
std::optional<int> numbered_capability(std::string_view name) {
  if (!name.starts_with(kPrefix)) return std::nullopt;
  const std::string_view digits = name.substr(kPrefix.size());
  if (digits.empty() || digits.front() == '0') return std::nullopt;  // one spelling per bit
  int bit = 0;
  const auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), bit);
  if (error != std::errc{} || end != digits.data() + digits.size()) return std::nullopt;
  if (bit <= kLastCapability || bit >= kMaskBits) return std::nullopt;
  return bit;
}

}  // namespace

std::string capability_name(int bit) {
  if (bit >= 0 && bit <= kLastCapability) {
    return std::string(kCapabilityNames[static_cast<std::size_t>(bit)]);
  }
  return std::string(kPrefix) + std::to_string(bit);
}

std::optional<int> capability_bit(std::string_view name) {
  const auto known = std::find(kCapabilityNames.begin(), kCapabilityNames.end(), name);
  if (known != kCapabilityNames.end()) {
    return static_cast<int>(known - kCapabilityNames.begin());
  }
  return numbered_capability(name);
}

std::vector<std::string> capability_names(uint64_t mask) {
  std::vector<std::string> names;
  for (int bit = 0; bit < kMaskBits; ++bit) {
    if ((mask >> bit) & 1U) names.push_back(capability_name(bit));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<uint64_t> capability_mask(const std::vector<std::string>& names) {
  uint64_t mask = 0;
  for (const std::string& name : names) {
    const std::optional<int> bit = capability_bit(name);
    if (!bit) {
      return fail("unknown capability \"", name,
                  "\": expected a name from <linux/capability.h> such as CAP_SYS_ADMIN "
                  "(names are case-sensitive and include the CAP_ prefix)");
    }
    mask |= uint64_t{1} << *bit;
  }
  return mask;
}

}  // namespace driftwatch::observe
