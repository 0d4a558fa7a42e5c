#pragma once
// Capability bit numbers <-> "CAP_…" names, as in <linux/capability.h>.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace driftwatch::observe {

/// Highest capability number this build knows (CAP_CHECKPOINT_RESTORE = 40).
inline constexpr int kLastCapability = 40;

/// "CAP_SYS_ADMIN" for 21; "CAP_41" style for numbers beyond kLastCapability.
std::string capability_name(int bit);
/// 21 for "CAP_SYS_ADMIN"; nullopt for an unknown name. Case-sensitive, as
/// the OCI spec writes them.
std::optional<int> capability_bit(std::string_view name);
/// Names of the set bits of a mask, sorted by name.
std::vector<std::string> capability_names(uint64_t mask);
/// The mask of a list of names; an unknown name is an error naming it.
Result<uint64_t> capability_mask(const std::vector<std::string>& names);

}  // namespace driftwatch::observe
