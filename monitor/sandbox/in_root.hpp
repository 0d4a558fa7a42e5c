#pragma once
// Looking a path up inside a sandbox's root without ever leaving it: the
// rules of openat2(RESOLVE_IN_ROOT), followed in user space one component at
// a time with nothing but openat(O_PATH | O_NOFOLLOW), fstatat, readlinkat,
// fstatfs and close, so that the sampler can run under a seccomp filter that
// denies openat2 (a filter cannot read openat2's flags out of its struct
// open_how) and lets openat through only without a write flag.

#include <cstddef>
#include <string_view>

#include "common/posix.hpp"

namespace driftwatch::sandbox {

/// The symlinks one lookup may follow before it fails with ELOOP (the
/// kernel's MAXSYMLINKS).
inline constexpr int kMaxSymlinks = 40;

/// How many directories below the root one lookup may hold open at once;
/// deeper fails with ENAMETOOLONG (the kernel has no such limit). Each level
/// is a descriptor, kept so that ".." goes back to it.
inline constexpr size_t kMaxDirectoryDepth = 128;

/// An O_PATH | O_CLOEXEC descriptor of `path` looked up inside the directory
/// `root_fd` (typically an O_PATH descriptor of /proc/PID/root) as
/// openat2(root_fd, path, {O_PATH | O_NOFOLLOW | O_CLOEXEC,
/// RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS}) would: leading slashes are
/// dropped ("" and "/" are the root itself); absolute symlinks restart at
/// root_fd; ".." at the root stays there; symlinks before the last
/// component are followed, at most kMaxSymlinks of them (ELOOP); a last
/// component that is a symlink is not followed and the descriptor is the
/// link's own, unless the path ends in "/", which follows it and requires a
/// directory; a magic link (/proc/PID/root, fd/N, ns/…) that would be
/// followed fails with ELOOP. Paths of PATH_MAX bytes or more fail with
/// ENAMETOOLONG, a NUL byte inside with EINVAL.
///
/// Where it differs from openat2: ".." goes back to the directory the walk
/// came through (a stack of descriptors, never openat(dir, "..")), so a
/// rename during the lookup cannot take it above the root, and it does not
/// fail with EAGAIN as openat2 does when any rename races a walk with "..";
/// fs.protected_symlinks is not applied; see kMaxDirectoryDepth.
///
/// On failure the Fd is empty and errno says why, with the kernel's codes
/// (ENOENT, ENOTDIR, EACCES, ELOOP, …); no exceptions.
Fd open_in_root(int root_fd, std::string_view path);

}  // namespace driftwatch::sandbox
