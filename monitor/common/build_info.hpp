#pragma once
// What was built: the version and the source revision. They live in one
// generated file (build_info.cpp), so a new commit re-links rather than
// recompiles, and the revision is never the one of an older configure.

namespace driftwatch {

const char* build_version();
const char* build_revision();  // short git hash, "unknown" outside a checkout

}  // namespace driftwatch
