#include "sandbox/in_root.hpp"

#include <fcntl.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "support/skip.hpp"
#include "support/temp_dir.hpp"

// open_in_root against its oracle: every lookup is also made with the real
// openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), as the sampler made it
// before it had to do without openat2, and the two must end on the same
// inode or fail with the same errno. The tree is a temporary directory, plus
// the real /proc through /proc/self/root for magic links.

using driftwatch::Fd;
using driftwatch::sandbox::kMaxDirectoryDepth;
using driftwatch::sandbox::kMaxSymlinks;
using driftwatch::sandbox::open_in_root;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

// Where a lookup ended: an inode, or an errno.
struct Outcome {
  int error = 0;
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& out, const Outcome& o) {
  if (o.error != 0) return out << "errno " << std::strerror(o.error) << " (" << o.error << ")";
  return out << "inode " << o.ino << " on device " << o.dev;
}

Outcome failed(int error) {
  return Outcome{error};
}

Outcome outcome_of(int fd, int error) {
  if (fd < 0) return failed(error);
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return Outcome{0, st.st_dev, st.st_ino};
}

// The inode at `path` itself (a symlink's own, not its target's).
Outcome inode_of(const fs::path& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return Outcome{0, st.st_dev, st.st_ino};
}

std::optional<Outcome> kernel_lookup(int root_fd, std::string path) {
  // Exactly the call the sampler used to make.
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  if (path.empty()) path = ".";
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0;; ++attempt) {
    const long fd = ::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how);
    const int error = errno;
    if (fd < 0 && error == ENOSYS) return std::nullopt;
    // A rename anywhere on the machine during a walk with ".." makes
    // openat2 give up with EAGAIN; the machine is shared, so ask again.
    if (fd < 0 && error == EAGAIN && attempt < 100) continue;
    Fd owned(static_cast<int>(fd));
    return outcome_of(owned.get(), error);
  }
}

Outcome user_lookup(int root_fd, std::string_view path) {
  errno = 0;
  Fd fd = open_in_root(root_fd, path);
  const int error = errno;
  if (!fd) REQUIRE(error != 0);  // a failure always says why
  return outcome_of(fd.get(), error);
}

bool have_openat2() {
  return kernel_lookup(AT_FDCWD, "/").has_value();
}

// The tree every test looks up in: <tmp>/root is the root; <tmp>/outside
// is what a lookup must never reach.
class Tree {
 public:
  Tree() : dir_("in-root") {
    dir_.write("outside/secret", "outside the root");
    dir_.write("root/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    dir_.write("root/dir/file", "f");
    dir_.write("root/dir/sub/file", "g");
    dir_.mkdir("root/empty");
    // Not searchable (but readable, so that TempDir can remove it): without
    // CAP_DAC_OVERRIDE even "locked/.." is EACCES.
    fs::permissions(dir_.mkdir("root/locked"), fs::perms::owner_read | fs::perms::owner_write);
    link("abs_passwd", "/etc/passwd");
    link("abs_shadow", "/etc/shadow");  // the host has one, the root does not
    link("abs_etc", "/etc");
    link("dir/sub/climb", "../../../../etc/passwd");
    link("dir/sub/climb_dir", "../../../../../..");
    link("dir/sub/climb_out", "../../../../outside/secret");
    link("loop_a", "loop_b");
    link("loop_b", "loop_a");
    link("self_loop", "self_loop");
    link("dirlink", "dir");
    link("absdirlink", "/dir");
    link("dir/sub/uplink", "..");
    link("dangling", "nowhere");
    link("filelink", "dir/file");
    link("dotlink", ".");
    link("dotdotlink", "..");
    link("rootlink", "/");
    link("trail", "dir/");
    link("ftrail", "dir/file/");
    link("deep_abs", "/dir/sub/../sub/climb");
    link("via_dirlink", "dirlink/sub");
    link("colon", "dir:sub");  // a ':' in a plain link: not a magic one
    dir_.mkdir("root/dir:sub");
    // chainN_0 -> chainN_1 -> … -> chainN_(N-1) -> dir: N links to "dir".
    for (int n : {kMaxSymlinks, kMaxSymlinks + 1}) {
      for (int i = 0; i < n; ++i) {
        const std::string next = i + 1 < n ? chain(n, i + 1) : "dir";
        link(chain(n, i), next);
      }
    }
    root_fd_ = Fd(::open(root().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(root_fd_);
  }

  static std::string chain(int n, int i) {
    return "chain" + std::to_string(n) + "_" + std::to_string(i);
  }
  fs::path root() const { return dir_ / "root"; }
  fs::path outside() const { return dir_ / "outside"; }
  int root_fd() const { return root_fd_.get(); }
  Outcome at(const fs::path& relative) const { return inode_of(root() / relative); }

 private:
  void link(const fs::path& relative, const fs::path& target) {
    dir_.symlink(fs::path("root") / relative, target);
  }
  TempDir dir_;
  Fd root_fd_;
};

struct Case {
  std::string path;
  Outcome expected;
};

// Checks `path` against both the expected outcome and the oracle.
void check_lookup(int root_fd, const Case& c) {
  INFO("path \"" << c.path << "\"");
  const Outcome mine = user_lookup(root_fd, c.path);
  CHECK(mine == c.expected);
  const auto kernel = kernel_lookup(root_fd, c.path);
  REQUIRE(kernel);
  CHECK(mine == *kernel);
}

}  // namespace

TEST_CASE(
    "open_in_root: every kind of path in the test tree ends where openat2 RESOLVE_IN_ROOT ends",
    "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Tree t;
  const Outcome root = t.at(".");
  const Outcome passwd = t.at("etc/passwd");
  const std::vector<Case> cases = {
      // Plain files and directories; ".", empty components, trailing slashes.
      {"", root},
      {"/", root},
      {"///", root},
      {".", root},
      {"./", root},
      {"etc/passwd", passwd},
      {"/etc/passwd", passwd},
      {"//etc//passwd", passwd},
      {"./etc/./passwd", passwd},
      {"dir", t.at("dir")},
      {"dir/", t.at("dir")},
      {"dir//", t.at("dir")},
      {"dir/.", t.at("dir")},
      {"dir/./", t.at("dir")},
      {"dir/sub/file", t.at("dir/sub/file")},
      {"dir/sub/../file", t.at("dir/file")},
      {"dir/sub/..", t.at("dir")},
      {"dir/..", root},
      {"empty", t.at("empty")},
      {"nope", failed(ENOENT)},
      {"nope/", failed(ENOENT)},
      {"nope/..", failed(ENOENT)},
      {"dir/nope/file", failed(ENOENT)},
      // ".." at the root stays at the root.
      {"..", root},
      {"../..", root},
      {"../../outside/secret", failed(ENOENT)},
      {"/../../etc/passwd", passwd},
      {"dir/../../../etc/passwd", passwd},
      // A file used as a directory.
      {"dir/file/", failed(ENOTDIR)},
      {"dir/file/.", failed(ENOTDIR)},
      {"dir/file/..", failed(ENOTDIR)},
      {"dir/file/x", failed(ENOTDIR)},
      {"etc/passwd/", failed(ENOTDIR)},
      // Absolute symlinks restart at the root: <root>/etc/passwd, and no
      // /etc/shadow inside, whatever the host has.
      {"abs_passwd/", failed(ENOTDIR)},
      {"abs_shadow/", failed(ENOENT)},
      {"abs_shadow/x", failed(ENOENT)},
      {"absdirlink/sub/file", t.at("dir/sub/file")},
      {"absdirlink/", t.at("dir")},
      {"rootlink/etc/passwd", passwd},
      {"rootlink/", root},
      {"deep_abs", t.at("deep_abs")},
      // Relative chains that try to climb above the root.
      {"dir/sub/climb_dir/etc/passwd", passwd},
      {"dir/sub/climb_dir/", root},
      {"dir/sub/climb_dir/../outside/secret", failed(ENOENT)},
      {"dir/sub/climb_out/", failed(ENOENT)},
      {"dir/sub/uplink/file", t.at("dir/file")},
      {"dir/sub/uplink/sub/uplink/sub/file", t.at("dir/sub/file")},
      {"dotdotlink/dotdotlink/etc/passwd", passwd},
      {"dotlink/dotlink/dir/file", t.at("dir/file")},
      // A symlink to a directory as an intermediate component, also one
      // whose text ends in "/" and one that goes through another.
      {"dirlink/file", t.at("dir/file")},
      {"dirlink/sub/../file", t.at("dir/file")},
      {"dirlink/", t.at("dir")},
      {"trail/file", t.at("dir/file")},
      {"trail/", t.at("dir")},
      {"via_dirlink/file", t.at("dir/sub/file")},
      {"via_dirlink/..", t.at("dir")},
      {"colon/", t.at("dir:sub")},
      // A symlink to a file, followed where it must be a directory.
      {"filelink/", failed(ENOTDIR)},
      {"filelink/x", failed(ENOTDIR)},
      {"ftrail/", failed(ENOTDIR)},
      {"ftrail/x", failed(ENOTDIR)},
      {"dangling/", failed(ENOENT)},
      {"dangling/x", failed(ENOENT)},
      // Loops.
      {"loop_a/", failed(ELOOP)},
      {"loop_a/x", failed(ELOOP)},
      {"self_loop/x", failed(ELOOP)},
      // Names too long for a component.
      {std::string(NAME_MAX + 1, 'x'), failed(ENAMETOOLONG)},
      {"dir/" + std::string(NAME_MAX + 1, 'x') + "/file", failed(ENAMETOOLONG)},
  };
  for (const auto& c : cases) check_lookup(t.root_fd(), c);
  // Search permission: what these give depends on who runs the test.
  for (const std::string path : {"locked", "locked/", "locked/.", "locked/..", "locked/x"}) {
    INFO("path \"" << path << "\"");
    const auto kernel = kernel_lookup(t.root_fd(), path);
    REQUIRE(kernel);
    CHECK(user_lookup(t.root_fd(), path) == *kernel);
  }
}

TEST_CASE("open_in_root: a final symlink is the link itself, not what it points to", "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Tree t;
  const std::vector<Case> cases = {
      {"abs_passwd", t.at("abs_passwd")},
      {"abs_shadow", t.at("abs_shadow")},
      {"dirlink", t.at("dirlink")},
      {"dangling", t.at("dangling")},
      {"loop_a", t.at("loop_a")},
      {"self_loop", t.at("self_loop")},
      {"filelink", t.at("filelink")},
      {"rootlink", t.at("rootlink")},
      {"trail", t.at("trail")},
      {"ftrail", t.at("ftrail")},
      {"deep_abs", t.at("deep_abs")},
      {"dir/sub/climb", t.at("dir/sub/climb")},
      {"dir/sub/climb_out", t.at("dir/sub/climb_out")},
      {"dirlink/sub/climb", t.at("dir/sub/climb")},
      {"absdirlink/sub/uplink", t.at("dir/sub/uplink")},
      {Tree::chain(kMaxSymlinks + 1, 0), t.at(Tree::chain(kMaxSymlinks + 1, 0))},
  };
  for (const auto& c : cases) check_lookup(t.root_fd(), c);
  // An O_PATH descriptor of a symlink fstat()s as the link.
  Fd fd = open_in_root(t.root_fd(), "abs_passwd");
  REQUIRE(fd);
  struct stat st {};
  REQUIRE(::fstat(fd.get(), &st) == 0);
  CHECK(S_ISLNK(st.st_mode));
}

TEST_CASE(
    "open_in_root: an absolute symlink to /etc/passwd resolves in the root, never on the host",
    "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  struct stat host {};
  if (::stat("/etc/passwd", &host) != 0 || !S_ISREG(host.st_mode))
    DW_SKIP("this host has no /etc/passwd file to tell apart from the root's");
  // In this root /etc/passwd is a directory: following the link into it
  // finds what is inside, where the host's file would be ENOTDIR.
  TempDir as_dir("in-root-passwd-dir");
  as_dir.write("root/etc/passwd/inside", "x");
  as_dir.symlink("root/abs_passwd", "/etc/passwd");
  as_dir.symlink("root/abs_etc", "/etc");
  Fd root(::open((as_dir / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  check_lookup(root.get(), {"abs_passwd/inside", inode_of(as_dir / "root/etc/passwd/inside")});
  check_lookup(root.get(), {"abs_passwd/", inode_of(as_dir / "root/etc/passwd")});
  check_lookup(root.get(), {"abs_etc/passwd", inode_of(as_dir / "root/etc/passwd")});
  // In this one there is no /etc at all: ENOENT, where the host's is there.
  TempDir bare("in-root-no-etc");
  bare.symlink("root/abs_passwd", "/etc/passwd");
  bare.symlink("root/abs_etc", "/etc");
  Fd bare_root(::open((bare / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(bare_root);
  check_lookup(bare_root.get(), {"abs_passwd/", failed(ENOENT)});
  check_lookup(bare_root.get(), {"abs_etc/passwd", failed(ENOENT)});
  // And in the usual tree, the root's own file, not the host's.
  Tree t;
  const Outcome found = user_lookup(t.root_fd(), "abs_etc/passwd");
  CHECK(found == t.at("etc/passwd"));
  CHECK_FALSE(found == (Outcome{0, host.st_dev, host.st_ino}));
  check_lookup(t.root_fd(), {"abs_etc/shadow", failed(ENOENT)});
}

TEST_CASE("open_in_root: follows 40 symlinks in one lookup and fails the 41st with ELOOP",
          "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Tree t;
  const std::string forty = Tree::chain(kMaxSymlinks, 0);
  const std::string forty_one = Tree::chain(kMaxSymlinks + 1, 0);
  check_lookup(t.root_fd(), {forty + "/file", t.at("dir/file")});
  check_lookup(t.root_fd(), {forty + "/", t.at("dir")});
  check_lookup(t.root_fd(), {forty_one + "/file", failed(ELOOP)});
  check_lookup(t.root_fd(), {forty_one + "/", failed(ELOOP)});
  // The budget is per lookup, not per link: 39 + 2 is 41.
  check_lookup(t.root_fd(),
               {Tree::chain(kMaxSymlinks, 1) + "/sub/uplink/sub/uplink/file", failed(ELOOP)});
  check_lookup(t.root_fd(),
               {Tree::chain(kMaxSymlinks, 2) + "/sub/uplink/sub/uplink/file", t.at("dir/file")});
}

TEST_CASE("open_in_root: a path of PATH_MAX bytes fails with ENAMETOOLONG, one byte less does not",
          "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Tree t;
  // PATH_MAX - 1 bytes: "./" many times, then "dir".
  std::string longest;
  while (longest.size() + 2 + 3 <= PATH_MAX - 1) longest += "./";
  longest += "dir";
  longest.resize(PATH_MAX - 1, '/');
  check_lookup(t.root_fd(), {longest, t.at("dir")});
  check_lookup(t.root_fd(), {longest + "/", failed(ENAMETOOLONG)});
  check_lookup(t.root_fd(), {std::string(PATH_MAX, 'a'), failed(ENAMETOOLONG)});
  // Leading slashes are dropped before the length counts, as before.
  check_lookup(t.root_fd(), {"/" + longest, t.at("dir")});
}

TEST_CASE(
    "open_in_root: a lookup deeper than kMaxDirectoryDepth directories fails, one at it does not",
    "[sandbox]") {
  TempDir t("in-root-deep");
  std::string at_limit;
  for (size_t i = 0; i < kMaxDirectoryDepth; ++i) at_limit += "d/";
  t.write("root/" + at_limit + "file", "deep");
  t.mkdir("root/" + at_limit + "d");
  Fd root(::open((t / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  CHECK(user_lookup(root.get(), at_limit + "file") == inode_of(t / "root" / (at_limit + "file")));
  CHECK(user_lookup(root.get(), at_limit) == inode_of(t / "root" / at_limit));
  CHECK(user_lookup(root.get(), at_limit + "d") == inode_of(t / "root" / (at_limit + "d")));
  CHECK(user_lookup(root.get(), at_limit + "d/") == failed(ENAMETOOLONG));
  // ".." gives a level back.
  CHECK(user_lookup(root.get(), at_limit + "../d/file") ==
        inode_of(t / "root" / (at_limit + "file")));
}

TEST_CASE("open_in_root: a NUL byte inside the path fails with EINVAL, not a shorter path",
          "[sandbox]") {
  Tree t;
  using namespace std::string_view_literals;
  CHECK(user_lookup(t.root_fd(), "dir\0/../etc/passwd"sv) == failed(EINVAL));
}

TEST_CASE("open_in_root: random paths over the test tree end where openat2 ends", "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Tree t;
  const std::vector<std::string> parts = {"",
                                          ".",
                                          "..",
                                          "dir",
                                          "sub",
                                          "file",
                                          "etc",
                                          "passwd",
                                          "nope",
                                          "empty",
                                          "abs_passwd",
                                          "abs_shadow",
                                          "abs_etc",
                                          "shadow",
                                          "climb",
                                          "climb_dir",
                                          "climb_out",
                                          "uplink",
                                          "dirlink",
                                          "absdirlink",
                                          "loop_a",
                                          "self_loop",
                                          "dangling",
                                          "filelink",
                                          "dotlink",
                                          "dotdotlink",
                                          "rootlink",
                                          "trail",
                                          "ftrail",
                                          "deep_abs",
                                          "via_dirlink",
                                          "colon",
                                          "dir:sub",
                                          "outside",
                                          "secret",
                                          Tree::chain(kMaxSymlinks, 0),
                                          Tree::chain(kMaxSymlinks + 1, 3)};
  std::mt19937 random(20240611);  // fixed: a failure is reproducible
  std::uniform_int_distribution<size_t> pick(0, parts.size() - 1);
  std::uniform_int_distribution<int> length(1, 8);
  std::bernoulli_distribution coin(0.3);
  int compared = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string path = coin(random) ? "/" : "";
    const int n = length(random);
    for (int k = 0; k < n; ++k) path += (k ? "/" : "") + parts[pick(random)];
    if (coin(random)) path += "/";
    INFO("path \"" << path << "\"");
    const auto kernel = kernel_lookup(t.root_fd(), path);
    REQUIRE(kernel);
    const Outcome mine = user_lookup(t.root_fd(), path);
    CHECK(mine == *kernel);
    ++compared;
  }
  CHECK(compared == 3000);
}

TEST_CASE("open_in_root: through /proc/self/root it ends where openat2 ends, magic links included",
          "[sandbox]") {
  if (!have_openat2()) DW_SKIP("this kernel has no openat2, the oracle");
  Fd root(::open("/proc/self/root", O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  struct stat proc {};
  if (::stat("/proc/self/status", &proc) != 0) DW_SKIP("no procfs at /proc");
  const std::string fd_dir = "/proc/self/fd/" + std::to_string(root.get());
  // What each of these is (ENOENT and ELOOP included) is whatever openat2
  // says; the point is the same answer without it.
  for (const std::string& path :
       {std::string("/etc/hostname"), std::string("/etc/hostname/"), std::string("/etc/passwd"),
        std::string("/proc/self/status"), std::string("/proc/thread-self/status"),
        std::string("/proc/mounts"), std::string("/proc/mounts/"), std::string("/proc/net/dev"),
        std::string("/proc/self"), std::string("/proc/self/"),
        // Magic links: the link itself when last, ELOOP when followed.
        std::string("/proc/self/root"), std::string("/proc/self/root/"),
        std::string("/proc/self/root/etc/hostname"), std::string("/proc/self/cwd/"),
        std::string("/proc/self/exe/"), std::string("/proc/self/ns/mnt"),
        std::string("/proc/self/ns/mnt/"), std::string("/proc/1/root/etc"), fd_dir, fd_dir + "/",
        fd_dir + "/etc/hostname", std::string("/proc/self/fd/0/x")}) {
    INFO("path \"" << path << "\"");
    const auto kernel = kernel_lookup(root.get(), path);
    REQUIRE(kernel);
    CHECK(user_lookup(root.get(), path) == *kernel);
  }
  CHECK(user_lookup(root.get(), "/proc/self/root/etc/hostname") == failed(ELOOP));
  CHECK(user_lookup(root.get(), "/proc/self/status") == inode_of("/proc/self/status"));
}

TEST_CASE("open_in_root: a directory moved out of the root mid-lookup does not take .. above it",
          "[sandbox]") {
  // "a/b/../../../secret" while another thread moves b out to outside/x/b
  // and back: a lookup that opened ".." of the moved b would climb
  // outside/x, outside, <tmp> and find <tmp>/secret. The stack of
  // descriptors pops back to a and the root instead. Racy by nature: a
  // lookup that opens ".." fails this on most runs, not all.
  TempDir scratch("in-root-race");
  scratch.write("secret", "above the root");
  scratch.mkdir("root/a/b");
  scratch.mkdir("outside/x");
  Fd root(::open((scratch / "root").c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  const Outcome secret = inode_of(scratch / "secret");
  const fs::path inside = scratch / "root/a/b";
  const fs::path moved = scratch / "outside/x/b";
  std::atomic<bool> stop{false};
  std::thread mover([&] {
    while (!stop.load()) {
      std::rename(inside.c_str(), moved.c_str());
      std::rename(moved.c_str(), inside.c_str());
    }
  });
  int escaped = 0;
  for (int i = 0; i < 20000; ++i)
    if (user_lookup(root.get(), "a/b/../../../secret") == secret) ++escaped;
  stop = true;
  mover.join();
  CHECK(escaped == 0);
}
