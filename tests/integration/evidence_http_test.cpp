// The evidence log as a real `driftwatch run` serves it under /evidence/:
// files written into state_dir/evidence/ (as the log writer lays them out,
// owned by the daemon user) come back over HTTP byte for byte with
// tlog-tiles' types and caching, through the confined front process; paths
// out of the directory, links and FIFOs are refused, and the daemon goes on
// answering.

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include <catch2/catch.hpp>

#include "app/confine.hpp"
#include "common/sha256.hpp"
#include "evidence/http_fetch.hpp"
#include "evidence/reader.hpp"
#include "integration/daemon_harness.hpp"
#include "support/oci_bundle.hpp"
#include "support/skip.hpp"

using namespace driftwatch::testing;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

// Writes state_dir/evidence/<relative> as the daemon user would have, with
// the directories above it (0700 as make_private_dirs makes them).
class EvidenceWriter {
 public:
  EvidenceWriter(fs::path evidence, const driftwatch::app::DaemonUser& user)
      : evidence_(std::move(evidence)), user_(user) {}

  fs::path write(const std::string& relative, const std::string& bytes) const {
    const fs::path file = evidence_ / relative;
    make_dirs(file.parent_path());
    {
      std::ofstream out(file, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      REQUIRE(out.good());
    }
    REQUIRE(::chown(file.c_str(), user_.uid, user_.gid) == 0);
    REQUIRE(::chmod(file.c_str(), 0600) == 0);
    return file;
  }

  void make_dirs(const fs::path& dir) const {
    if (fs::exists(dir)) return;
    make_dirs(dir.parent_path());
    REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
    REQUIRE(::chown(dir.c_str(), user_.uid, user_.gid) == 0);
  }

 private:
  fs::path evidence_;
  driftwatch::app::DaemonUser user_;
};

std::string pattern(size_t size, unsigned seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 31 + seed) % 256);
  return out;
}

}  // namespace

std::string read_file_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

TEST_CASE(
    "evidence over http: the daemon serves its state_dir/evidence as a tlog-tiles directory, with "
    "its types and caching, and refuses paths out of it",
    "[root][integration][daemon]") {
  if (auto why = missing_requirement({"root"})) DW_SKIP(*why);
  auto user = driftwatch::app::resolve_daemon_user();
  REQUIRE(user);
  DaemonUnderTest daemon;
  daemon.start();
  const fs::path evidence = daemon.dir() / "state" / "evidence";

  // A file the log does not have (yet): a 404 that is not cached.
  auto none = http_request(daemon.port(), "GET", "/evidence/checkpoints/999999");
  CHECK(none.status == 404);
  CHECK(none.header("cache-control") == "no-store");

  // The daemon's own checkpoint (written at start), and files of kinds its
  // young log has none of yet, at indexes it will not reach in this test.
  const std::string checkpoint = read_file_text(evidence / "checkpoint");
  const std::string size = checkpoint.substr(
      checkpoint.find('\n') + 1,
      checkpoint.find('\n', checkpoint.find('\n') + 1) - checkpoint.find('\n') - 1);
  const EvidenceWriter writer(evidence, *user);
  const std::string blob = pattern(3 * 1024 * 1024 + 17, 5);  // read off the loop
  const std::string blob_name = "blob/" + driftwatch::sha256_hex(blob);
  const std::string bundle = std::string("\x00\x03{\"a\"", 6) + std::string("\x00\x02{}", 4);
  writer.write("tile/0/x001/233", pattern(8192, 1));
  writer.write("tile/0/x001/234.p/7", pattern(7 * 32, 2));
  writer.write("tile/entries/x001/234.p/2", bundle);
  writer.write(blob_name, blob);

  struct Expected {
    std::string path;
    std::string body;
    std::string content_type;
    std::string cache_control;
  };
  const std::string text = "text/plain; charset=utf-8";
  const std::string octets = "application/octet-stream";
  const std::string immutable = "public, max-age=31536000, immutable";
  const std::vector<Expected> served = {
      {"checkpoint", checkpoint, text, "no-cache"},
      {"checkpoints/" + size, checkpoint, text, immutable},
      {"tile/0/x001/233", pattern(8192, 1), octets, immutable},
      {"tile/0/x001/234.p/7", pattern(7 * 32, 2), octets, "public, max-age=5"},
      {"tile/entries/x001/234.p/2", bundle, octets, "public, max-age=5"},
      {blob_name, blob, octets, immutable},
  };
  for (const auto& file : served) {
    INFO("GET /evidence/" << file.path);
    auto reply = http_request(daemon.port(), "GET", "/evidence/" + file.path);
    INFO(reply.body.substr(0, 300) << "\n" << daemon.log());
    REQUIRE(reply.status == 200);
    // The daemon may sign a newer checkpoint meanwhile (sandboxes of other
    // tests are discovered too): then the served one is the file as it is now.
    if (file.path == "checkpoint" && reply.body != file.body)
      CHECK(reply.body == read_file_text(evidence / "checkpoint"));
    else
      CHECK(reply.body == file.body);
    CHECK(reply.header("content-type") == file.content_type);
    CHECK(reply.header("cache-control") == file.cache_control);
    CHECK(reply.header("content-length") == std::to_string(reply.body.size()));
  }

  // The auditor's side: the same files through HttpFetcher and url_reader,
  // on one kept-alive connection.
  auto fetcher = driftwatch::evidence::HttpFetcher::for_url(
      "http://127.0.0.1:" + std::to_string(daemon.port()) + "/evidence/");
  REQUIRE(fetcher);
  auto read = driftwatch::evidence::url_reader(std::move(*fetcher));
  for (const auto& file : served) {
    INFO("fetch " << file.path);
    auto fetched = read(file.path, 4 * 1024 * 1024);
    INFO((fetched ? std::string() : fetched.error().message));
    REQUIRE(fetched.has_value());
    REQUIRE(fetched->has_value());
    CHECK(**fetched == file.body);
  }
  auto missing = read("tile/0/001", 8192);
  REQUIRE(missing.has_value());
  CHECK_FALSE(missing->has_value());

  // Out of the directory: refused before any lookup, never a 500.
  std::ofstream(daemon.dir() / "state" / "secret.txt") << "not evidence";
  for (const char* path : {"/evidence/../config.json", "/evidence/%2e%2e/%2e%2e/config.json",
                           "/evidence/tile/0/../../../secret.txt", "/evidence/..%2fsecret.txt",
                           "/evidence//checkpoint", "/evidence/./checkpoint"}) {
    INFO(path);
    auto reply = http_request(daemon.port(), "GET", path);
    CHECK(reply.status == 400);
    CHECK_THAT(reply.body, !Contains("not evidence"));
    CHECK_THAT(reply.body, !Contains("node_name"));
  }
  for (const char* path : {"/evidence/secret.txt", "/evidence/tile/0/0000", "/evidence/",
                           "/evidence/tile/0/000.p/256", "/evidence/checkpoints/03"}) {
    INFO(path);
    CHECK(http_request(daemon.port(), "GET", path).status == 404);
  }

  // Inside it, a link to a file out of it, and a FIFO: refused at once.
  fs::create_symlink(daemon.dir() / "state" / "secret.txt", evidence / "checkpoints" / "90004");
  auto link = http_request(daemon.port(), "GET", "/evidence/checkpoints/90004");
  CHECK(link.status == 403);
  CHECK_THAT(link.body, Contains("symbolic link"));
  CHECK_THAT(link.body, !Contains("not evidence"));
  REQUIRE(::mkfifo((evidence / "checkpoints" / "90005").c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  auto fifo = http_request(daemon.port(), "GET", "/evidence/checkpoints/90005");
  CHECK(fifo.status == 403);
  CHECK_THAT(fifo.body, Contains("FIFO"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  // A POST is not how the log is written.
  CHECK(http_request(daemon.port(), "POST", "/evidence/checkpoint", "x").status == 405);
  CHECK(daemon.get("/healthz").is_object());
  CHECK(daemon.stop() == 0);
}
