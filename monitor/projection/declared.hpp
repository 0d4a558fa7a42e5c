#pragma once
// The declared projection: what an OCI runtime config promises, computed the
// way runc 1.1 and crun 1.8 actually apply it (each runtime default is
// documented where it is filled in, in declared.cpp).

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "projection/projection.hpp"

namespace driftwatch::projection {

/// The declared projection of an OCI runtime config (config.json contents).
/// A document that is not an OCI config (no "ociVersion", wrong types,
/// unknown capability names, a uid outside the user namespace mappings) is
/// an error naming the offending field.
Result<Projection> declared_projection(const nlohmann::json& oci_config);

}  // namespace driftwatch::projection
