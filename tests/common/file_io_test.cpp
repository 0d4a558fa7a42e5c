#include "common/file_io.hpp"
#include "support/fifo_deadline.hpp"

using driftwatch::testing::within_deadline;

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <type_traits>

#include <catch2/catch.hpp>

using Catch::Matchers::Contains;
using driftwatch::open_regular_file;
using driftwatch::open_regular_file_if_exists;
using driftwatch::read_regular_file;
using driftwatch::read_regular_file_if_exists;

namespace {

// A directory under the system temp dir, removed when the test ends.
struct TempDir {
  TempDir() {
    std::random_device random;
    path = std::filesystem::temp_directory_path() /
           ("driftwatch-file-io-test-" + std::to_string(random()) + "-" + std::to_string(random()));
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
  std::filesystem::path path;
};

void write(const std::filesystem::path& file, std::string_view text) {
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out << text;
  REQUIRE(out.good());
}

std::filesystem::path make_fifo(const std::filesystem::path& path) {
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  return path;
}

}  // namespace

TEST_CASE("file io: a regular file is read whole, blocking again once open", "[common]") {
  TempDir dir;
  write(dir.path / "config.json", "{\"probes\": false}\n");
  const auto text = read_regular_file(dir.path / "config.json", 1024, "config");
  INFO((text ? std::string() : text.error().message));
  REQUIRE(text.has_value());
  CHECK(*text == "{\"probes\": false}\n");

  const auto file = open_regular_file(dir.path / "config.json", "config");
  REQUIRE(file.has_value());
  CHECK(file->size == 18);
  const int flags = ::fcntl(file->fd.get(), F_GETFL);
  CHECK((flags & O_NONBLOCK) == 0);
  CHECK((::fcntl(file->fd.get(), F_GETFD) & FD_CLOEXEC) != 0);
}

TEST_CASE("file io: a FIFO is refused at once instead of waiting for a writer", "[common]") {
  TempDir dir;
  const auto fifo = make_fifo(dir.path / "journal.jsonl");
  const auto start = std::chrono::steady_clock::now();
  const auto opened =
      within_deadline([&] { return open_regular_file(fifo, "launch journal"); }, fifo);
  INFO("open_regular_file blocked on the FIFO until a writer came");
  REQUIRE(opened.has_value());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  REQUIRE_FALSE(opened->has_value());
  CHECK(opened->error().message ==
        "launch journal " + fifo.string() + " is a FIFO, not a regular file");

  const auto read = within_deadline([&] { return read_regular_file(fifo, 1024, "config"); }, fifo);
  REQUIRE(read.has_value());
  REQUIRE_FALSE(read->has_value());
  CHECK(read->error().message == "config " + fifo.string() + " is a FIFO, not a regular file");
}

TEST_CASE("file io: a symbolic link is refused naming it, and not followed", "[common]") {
  TempDir dir;
  write(dir.path / "shadow", "root:$6$secret-hash:19000::::::\n");
  const auto link = dir.path / "journal.jsonl";
  std::filesystem::create_symlink(dir.path / "shadow", link);

  const auto read = read_regular_file(link, 1024, "launch journal");
  REQUIRE_FALSE(read.has_value());
  CHECK(read.error().message ==
        "launch journal " + link.string() + " is a symbolic link; name the file itself");
  CHECK_THAT(read.error().message, !Contains("secret-hash"));

  const auto opened = open_regular_file_if_exists(link, "launch journal");
  REQUIRE_FALSE(opened.has_value());
  CHECK_THAT(opened.error().message, Contains("is a symbolic link"));

  // A dangling link is no missing file: it is refused the same way.
  std::filesystem::remove(dir.path / "shadow");
  const auto dangling = read_regular_file_if_exists(link, 1024, "trust file");
  REQUIRE_FALSE(dangling.has_value());
  CHECK_THAT(dangling.error().message,
             Contains("trust file " + link.string() + " is a symbolic link"));
}

TEST_CASE("file io: only the last component is checked for a link", "[common]") {
  // O_NOFOLLOW: a linked directory on the way (/var/log -> /data/log) is
  // followed; the file itself must not be a link.
  TempDir dir;
  std::filesystem::create_directories(dir.path / "real");
  write(dir.path / "real" / "trust.json", "{}");
  std::filesystem::create_directory_symlink(dir.path / "real", dir.path / "linked");
  const auto read = read_regular_file(dir.path / "linked" / "trust.json", 1024, "trust file");
  INFO((read ? std::string() : read.error().message));
  REQUIRE(read.has_value());
  CHECK(*read == "{}");
}

TEST_CASE("file io: a directory, a socket and a device are refused naming their type", "[common]") {
  TempDir dir;
  const auto directory = read_regular_file(dir.path, 1024, "config");
  REQUIRE_FALSE(directory.has_value());
  CHECK(directory.error().message ==
        "config " + dir.path.string() + " is a directory, not a regular file");

  const auto socket_path = dir.path / "s";
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  REQUIRE(socket_path.string().size() < sizeof address.sun_path);
  std::strcpy(address.sun_path, socket_path.c_str());
  const int bound = ::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof address);
  ::close(listener);
  REQUIRE(bound == 0);
  const auto socket = open_regular_file(socket_path, "launch journal");
  REQUIRE_FALSE(socket.has_value());
  CHECK(socket.error().message ==
        "launch journal " + socket_path.string() + " is a socket, not a regular file");

  const auto device = open_regular_file("/dev/null", "trust file");
  REQUIRE_FALSE(device.has_value());
  CHECK(device.error().message == "trust file /dev/null is a character device, not a regular file");
}

TEST_CASE("file io: a missing file is nullopt or an error naming it, as asked", "[common]") {
  TempDir dir;
  const auto absent = dir.path / "absent.json";
  const auto maybe = open_regular_file_if_exists(absent, "launch journal");
  REQUIRE(maybe.has_value());
  CHECK_FALSE(maybe->has_value());
  const auto maybe_text = read_regular_file_if_exists(absent, 10, "journal offset file");
  REQUIRE(maybe_text.has_value());
  CHECK_FALSE(maybe_text->has_value());

  const auto opened = open_regular_file(absent, "launch journal");
  REQUIRE_FALSE(opened.has_value());
  CHECK(opened.error().message ==
        "cannot open launch journal " + absent.string() + ": No such file or directory");
  const auto read = read_regular_file(absent, 10, "config");
  REQUIRE_FALSE(read.has_value());
  CHECK(read.error().message ==
        "cannot read config " + absent.string() + ": No such file or directory");
}

TEST_CASE("file io: a file over the limit is refused naming the limit", "[common]") {
  TempDir dir;
  write(dir.path / "big", std::string(100, 'x'));
  CHECK(read_regular_file(dir.path / "big", 100, "config").value_or("") == std::string(100, 'x'));
  const auto big = read_regular_file(dir.path / "big", 99, "config");
  REQUIRE_FALSE(big.has_value());
  CHECK(big.error().message ==
        "cannot read config " + (dir.path / "big").string() + ": larger than 99 bytes");
}

TEST_CASE("file io: below a root, no link is followed and only plain names are looked up",
          "[common]") {
  TempDir dir;
  std::filesystem::create_directories(dir.path / "root" / "a");
  std::filesystem::create_directories(dir.path / "outside");
  write(dir.path / "root" / "a" / "file", "inside");
  write(dir.path / "outside" / "file", "outside");
  const auto root = dir.path / "root";
  const auto read = [&](std::string_view relative) {
    return driftwatch::read_regular_file_beneath(root, relative, 1024, "evidence file");
  };
  auto inside = read("a/file");
  REQUIRE(inside.has_value());
  REQUIRE(inside->has_value());
  CHECK(**inside == "inside");
  auto missing = read("a/none");
  REQUIRE(missing.has_value());
  CHECK_FALSE(missing->has_value());
  auto through_file = read("a/file/more");  // a file where a directory would be
  REQUIRE(through_file.has_value());
  CHECK_FALSE(through_file->has_value());

  std::filesystem::create_directory_symlink(dir.path / "outside", root / "link");
  auto linked = read("link/file");
  REQUIRE_FALSE(linked.has_value());
  CHECK(linked.error().message ==
        "evidence file " + (root / "link/file").string() +
            ": link on the way is a symbolic link, which is not followed");
  for (const char* bad :
       {"", "/a/file", "a//file", "a/file/", "./a/file", "a/../a/file", "..", "../outside/file"}) {
    INFO(bad);
    auto refused = read(bad);
    REQUIRE_FALSE(refused.has_value());
    CHECK_THAT(refused.error().message, Contains("not a relative path of plain names"));
  }
  // A root that does not exist: nothing there.
  auto no_root = driftwatch::read_regular_file_beneath(dir.path / "none", "a", 10, "x");
  REQUIRE(no_root.has_value());
  CHECK_FALSE(no_root->has_value());
}
