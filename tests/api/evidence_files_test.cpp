#include "api/evidence_files.hpp"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <catch2/catch.hpp>

#include "api/routes.hpp"
#include "support/fifo_deadline.hpp"
#include "support/temp_dir.hpp"

using Catch::Matchers::Contains;
using driftwatch::api::EvidenceFileKind;
using driftwatch::api::EvidencePath;
using driftwatch::api::HttpResponse;
using driftwatch::api::parse_evidence_path;
using driftwatch::api::serve_evidence_file;
using driftwatch::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kHash(64, 'a');
const std::string kHex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

EvidencePath tile(uint8_t level, uint64_t index, uint16_t width = 256) {
  EvidencePath file;
  file.kind = EvidenceFileKind::hash_tile;
  file.level = level;
  file.index = index;
  file.width = width;
  return file;
}

EvidencePath bundle(uint64_t index, uint16_t width = 256) {
  EvidencePath file = tile(0, index, width);
  file.kind = EvidenceFileKind::entry_bundle;
  return file;
}

EvidencePath at_size(uint64_t size) {
  EvidencePath file;
  file.kind = EvidenceFileKind::checkpoint_at_size;
  file.index = size;
  return file;
}

EvidencePath blob(std::string hash) {
  EvidencePath file;
  file.kind = EvidenceFileKind::blob;
  file.blob_sha256 = std::move(hash);
  return file;
}

std::string header(const HttpResponse& response, std::string_view name) {
  for (const auto& [key, value] : response.headers)
    if (key == name) return value;
  return "";
}

// Every byte value, `size` of them.
std::string bytes(size_t size) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<char>(i * 7 % 256);
  return out;
}

}  // namespace

TEST_CASE("evidence files: the path parser accepts each file of the layout in its one spelling",
          "[api][evidence]") {
  const std::vector<std::pair<std::string, EvidencePath>> accepted = {
      {"checkpoint", EvidencePath{}},
      {"checkpoints/0", at_size(0)},
      {"checkpoints/1", at_size(1)},
      {"checkpoints/70000", at_size(70000)},
      {"checkpoints/18446744073709551615", at_size(18446744073709551615ull)},
      {"tile/0/000", tile(0, 0)},
      {"tile/0/001", tile(0, 1)},
      {"tile/0/999", tile(0, 999)},
      {"tile/0/x001/000", tile(0, 1000)},
      {"tile/0/x001/x234/067", tile(0, 1234067)},
      {"tile/0/000.p/1", tile(0, 0, 1)},
      {"tile/0/x001/234.p/255", tile(0, 1234, 255)},
      {"tile/1/017.p/17", tile(1, 17, 17)},
      {"tile/2/000.p/1", tile(2, 0, 1)},
      {"tile/6/255", tile(6, 255)},
      {"tile/7/000", tile(7, 0)},
      {"tile/63/000", tile(63, 0)},
      // The last level-0 tile of a tree of 2^64 - 1 entries: 2^56 - 1.
      {"tile/0/x072/x057/x594/x037/x927/935", tile(0, 72057594037927935ull)},
      {"tile/entries/000", bundle(0)},
      {"tile/entries/x001/234.p/17", bundle(1234, 17)},
      {"tile/entries/x072/x057/x594/x037/x927/935", bundle(72057594037927935ull)},
      {"blob/" + kHex, blob(kHex)},
      {"blob/" + kHash, blob(kHash)},
  };
  for (const auto& [path, expected] : accepted) {
    INFO(path);
    const auto parsed = parse_evidence_path(path);
    INFO((parsed ? std::string() : parsed.error().message));
    REQUIRE(parsed.has_value());
    CHECK(*parsed == expected);
    CHECK(driftwatch::api::evidence_path_string(*parsed) == path);
  }
}

TEST_CASE("evidence files: the path parser refuses every other spelling and every other path",
          "[api][evidence]") {
  const std::vector<std::string> refused = {
      "",
      "/",
      "/checkpoint",
      "checkpoint/",
      "checkpoint/x",
      "Checkpoint",
      "checkpoint.txt",
      "checkpoint?x=1",
      std::string("checkpoint\0", 11),
      "checkpoints",
      "checkpoints/",
      "checkpoints/01",
      "checkpoints/00",
      "checkpoints/-1",
      "checkpoints/+1",
      "checkpoints/1x",
      "checkpoints/ 1",
      "checkpoints/18446744073709551616",
      "checkpoints/99999999999999999999999",
      "tile",
      "tile/",
      "tile/0",
      "tile/0/",
      "tile/00/000",
      "tile/01/000",
      "tile/64/000",
      "tile/-1/000",
      "tile/a/000",
      "tile/data/000",
      "tile/0/0",
      "tile/0/00",
      "tile/0/0000",
      "tile/0/1",
      "tile/0/x000/001",  // a zero group in front: 1 is "001"
      "tile/0/x000/x001/000",
      "tile/0/001/000",  // the 'x' missing
      "tile/0/x001",     // an 'x' on the last group
      "tile/0/X001/000",
      "tile/0/xx01/000",
      "tile/0/x01/000",
      "tile/0/x0001/000",
      "tile/0/x001/00a",
      "tile/0/000/",
      "tile/0//000",
      "tile//0/000",
      "tile/0/./000",
      "tile/0/../000",
      "tile/0/000.p",
      "tile/0/000.p/",
      "tile/0/000.p/0",
      "tile/0/000.p/01",
      "tile/0/000.p/256",
      "tile/0/000.p/1000",
      "tile/0/000.P/5",
      "tile/0/000.p/5/",
      "tile/0/000.p/5.p/5",
      "tile/0/.p/5",
      "tile/0/000.p/x005",
      // Past what a tree of at most 2^64 - 1 entries has.
      "tile/0/x072/x057/x594/x037/x927/936",
      "tile/entries/x072/x057/x594/x037/x927/936",
      "tile/6/256",
      "tile/7/001",
      "tile/63/001",
      "tile/0/x018/x446/x744/x073/x709/x551/616",
      "tile/0/x001/x002/x003/x004/x005/x006/x007/008",
      "tile/entries",
      "tile/entries/",
      "tile/entries/0",
      "tile/entries/000.p/256",
      "tile/entries/000.p/0",
      "blob",
      "blob/",
      "blob/" + kHash.substr(1),
      "blob/" + kHash + "a",
      "blob/" + std::string(64, 'A'),
      "blob/" + std::string(63, 'a') + "g",
      "blob/" + kHash + "/",
      "blob/sha256:" + kHash,
      "..",
      "../config.json",
      "../../etc/passwd",
      "./checkpoint",
      "tile/../checkpoint",
      "node.key",
      "accepted.jsonl",
      "tile/0/000\n",
  };
  for (const auto& path : refused) {
    INFO("'" << path << "'");
    const auto parsed = parse_evidence_path(path);
    CHECK_FALSE(parsed.has_value());
    if (!parsed) CHECK_THAT(parsed.error().message, Contains("is not in the layout"));
  }
}

TEST_CASE("evidence files: a path no server could hold is a 400, any other unknown one a 404",
          "[api][evidence]") {
  const auto status = [](std::string_view path) {
    auto request = driftwatch::api::evidence_request(path);
    return request ? 200 : request.error().status;
  };
  CHECK(status("tile/0/000") == 200);
  CHECK(status("../config.json") == 400);
  CHECK(status("tile/0/../../node.key") == 400);
  CHECK(status("tile//0/000") == 400);
  CHECK(status("checkpoint/") == 400);
  CHECK(status(std::string_view("checkpoint\0", 11)) == 400);
  CHECK(status("tile/0/\xff") == 400);
  CHECK(status("") == 404);
  CHECK(status("config.json") == 404);
  CHECK(status("tile/0/0000") == 404);
  CHECK(status("blob/" + std::string(64, 'A')) == 404);
  const auto refused = driftwatch::api::evidence_request("tile/0/0000");
  REQUIRE_FALSE(refused.has_value());
  CHECK(refused.error().content_type == "application/json");
  CHECK_THAT(refused.error().body, Contains("tile/entries/<N>[.p/<W>]"));
  CHECK(header(refused.error(), "Cache-Control") == "no-store");
}

TEST_CASE("evidence files: size limits and caching follow the kind of file", "[api][evidence]") {
  using driftwatch::api::cache_control;
  using driftwatch::api::max_file_bytes;
  using driftwatch::api::read_on_loop;
  CHECK(max_file_bytes(tile(0, 0)) == 8192);
  CHECK(max_file_bytes(tile(3, 0, 17)) == 17 * 32);
  CHECK(max_file_bytes(bundle(0)) == 256 * 65537);
  CHECK(max_file_bytes(bundle(0, 1)) == 65537);
  CHECK(max_file_bytes(blob(kHash)) == 4 * 1024 * 1024);
  CHECK(read_on_loop(EvidencePath{}));
  CHECK(read_on_loop(at_size(3)));
  CHECK(read_on_loop(tile(0, 0)));
  CHECK_FALSE(read_on_loop(bundle(0, 1)));
  CHECK_FALSE(read_on_loop(blob(kHash)));

  const std::string immutable = "public, max-age=31536000, immutable";
  CHECK(cache_control(EvidencePath{}) == "no-cache");
  CHECK(cache_control(at_size(3)) == immutable);
  CHECK(cache_control(tile(0, 0)) == immutable);
  CHECK(cache_control(bundle(7)) == immutable);
  CHECK(cache_control(blob(kHash)) == immutable);
  CHECK(cache_control(tile(0, 0, 3)) == "public, max-age=5");
  CHECK(cache_control(bundle(0, 3)) == "public, max-age=5");
}

TEST_CASE("evidence files: each kind of file is served with its bytes, type and caching",
          "[api][evidence]") {
  TempDir dir("evidence-serve");
  const std::string checkpoint = "driftwatch/test-node\n70000\nq83vEjRkMDk=\n\n— test-node abc=\n";
  dir.write("checkpoint", checkpoint);
  dir.write("checkpoints/70000", checkpoint);
  dir.write("tile/0/x001/234", bytes(8192));
  dir.write("tile/1/000.p/17", bytes(17 * 32));
  dir.write("tile/entries/x001/234.p/2", std::string("\x00\x02{}\x00\x01x", 7));
  dir.write("blob/" + kHash, bytes(3 * 1024 * 1024));

  struct Case {
    EvidencePath file;
    std::string content_type;
    std::string cache_control;
    std::string body;
  };
  const std::string octets = "application/octet-stream";
  const std::string text = "text/plain; charset=utf-8";
  const std::string immutable = "public, max-age=31536000, immutable";
  const std::vector<Case> cases = {
      {EvidencePath{}, text, "no-cache", checkpoint},
      {at_size(70000), text, immutable, checkpoint},
      {tile(0, 1234), octets, immutable, bytes(8192)},
      {tile(1, 0, 17), octets, "public, max-age=5", bytes(17 * 32)},
      {bundle(1234, 2), octets, "public, max-age=5", std::string("\x00\x02{}\x00\x01x", 7)},
      {blob(kHash), octets, immutable, bytes(3 * 1024 * 1024)},
  };
  for (const auto& c : cases) {
    INFO(driftwatch::api::evidence_path_string(c.file));
    const HttpResponse response = serve_evidence_file(dir.path(), c.file);
    INFO(response.body.substr(0, 300));
    REQUIRE(response.status == 200);
    CHECK(response.content_type == c.content_type);
    CHECK(header(response, "Cache-Control") == c.cache_control);
    CHECK(response.body == c.body);
  }
}

TEST_CASE("evidence files: a missing file or evidence directory is a 404 saying which",
          "[api][evidence]") {
  TempDir dir("evidence-missing");
  dir.mkdir("tile/0");
  const auto missing = serve_evidence_file(dir.path(), tile(0, 5));
  CHECK(missing.status == 404);
  CHECK_THAT(missing.body, Contains("no tile/0/005 in the evidence log"));
  CHECK(header(missing, "Cache-Control") == "no-store");
  // A partial tile asked for where the full one is a file: still no such file.
  dir.write("tile/0/000", bytes(8192));
  CHECK(serve_evidence_file(dir.path(), tile(0, 0, 5)).status == 404);

  const auto no_dir = serve_evidence_file(dir / "evidence", EvidencePath{});
  CHECK(no_dir.status == 404);
  CHECK_THAT(no_dir.body, Contains("does not exist yet"));
}

TEST_CASE(
    "evidence files: a symbolic link anywhere below the evidence dir is refused, not followed",
    "[api][evidence]") {
  TempDir dir("evidence-links");
  const fs::path evidence = dir.mkdir("evidence");
  dir.write("node.key", "-----BEGIN PRIVATE KEY-----\nsecret\n");
  dir.write("elsewhere/0/000", bytes(8192));

  // The file itself a link.
  dir.symlink("evidence/checkpoint", dir / "node.key");
  const auto last = serve_evidence_file(evidence, EvidencePath{});
  CHECK(last.status == 403);
  CHECK_THAT(last.body, Contains("symbolic link"));
  CHECK_THAT(last.body, !Contains("secret"));

  // A directory on the way a link: tile -> ../elsewhere.
  dir.symlink("evidence/tile", dir / "elsewhere");
  const auto on_the_way = serve_evidence_file(evidence, tile(0, 0));
  CHECK(on_the_way.status == 403);
  CHECK_THAT(on_the_way.body, Contains("tile on the way is a symbolic link"));

  // A relative link that stays inside is refused all the same.
  dir.write("evidence/blob/real", "x");
  dir.symlink("evidence/blob/" + kHash, "real");
  CHECK(serve_evidence_file(evidence, blob(kHash)).status == 403);
}

TEST_CASE("evidence files: a FIFO or a directory is refused at once, never waited on",
          "[api][evidence]") {
  TempDir dir("evidence-fifo");
  const fs::path fifo = dir / "checkpoint";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  const auto answer = driftwatch::testing::within_deadline(
      [&] { return serve_evidence_file(dir.path(), EvidencePath{}); }, fifo);
  INFO("serving blocked on the FIFO until a writer came");
  REQUIRE(answer.has_value());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  CHECK(answer->status == 403);
  CHECK_THAT(answer->body, Contains("is a FIFO, not a regular file"));

  dir.mkdir("tile/0/000");
  const auto directory = serve_evidence_file(dir.path(), tile(0, 0));
  CHECK(directory.status == 403);
  CHECK_THAT(directory.body, Contains("is a directory"));
}

TEST_CASE("evidence files: a file larger than its kind can hold is a 500 naming the damage",
          "[api][evidence]") {
  TempDir dir("evidence-large");
  dir.write("tile/0/000.p/1", bytes(33));
  dir.write("tile/0/000", bytes(8193));
  dir.write("checkpoint", std::string(16 * 1024 + 1, 'c'));
  for (const auto& file : {tile(0, 0, 1), tile(0, 0), EvidencePath{}}) {
    const auto response = serve_evidence_file(dir.path(), file);
    INFO(response.body);
    CHECK(response.status == 500);
    CHECK_THAT(response.body, Contains("the log is damaged"));
  }
  dir.write("tile/0/000.p/2", bytes(64));
  CHECK(serve_evidence_file(dir.path(), tile(0, 0, 2)).status == 200);
}

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

// add_routes() on a real HttpServer, its loop on a thread, large reads on a
// pool as the daemon does them.
class EvidenceServer {
 public:
  explicit EvidenceServer(std::optional<fs::path> dir) {
    driftwatch::api::DaemonView view;
    view.evidence_dir = std::move(dir);
    view.off_loop = [this](std::function<HttpResponse()> work, driftwatch::api::Respond respond) {
      ++off_loop_reads;
      asio::post(pool_, [this, work = std::move(work), respond = std::move(respond)]() mutable {
        auto answer = work();
        asio::post(io_, [respond = std::move(respond), answer = std::move(answer)]() mutable {
          respond(std::move(answer));
        });
      });
    };
    driftwatch::api::add_routes(server_, std::move(view));
    const auto listening = server_.listen("127.0.0.1:0");
    REQUIRE(listening.has_value());
    loop_ = std::thread([this] { io_.run(); });
  }
  ~EvidenceServer() {
    asio::post(io_, [this] { server_.stop(); });
    loop_.join();
    pool_.join();
  }

  http::response<http::string_body> get(const std::string& target) {
    asio::io_context io;
    beast::tcp_stream stream(io);
    stream.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), server_.port()));
    http::request<http::empty_body> request{http::verb::get, target, 11};
    request.set(http::field::host, "127.0.0.1");
    http::write(stream, request);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    http::read(stream, buffer, parser);
    return parser.release();
  }

  std::atomic<int> off_loop_reads{0};

 private:
  asio::io_context io_;
  asio::thread_pool pool_{1};
  driftwatch::api::HttpServer server_{io_};
  std::thread loop_;
};

std::string field(const http::response<http::string_body>& response, http::field name) {
  const auto value = response[name];
  return std::string(value.data(), value.size());
}

}  // namespace

TEST_CASE("evidence files: GET /evidence/ serves the layout with its headers, blobs off the loop",
          "[api][evidence]") {
  TempDir dir("evidence-route");
  dir.write("checkpoint", "driftwatch/n\n1\nAAAA\n\n— n x\n");
  dir.write("tile/0/000.p/1", bytes(32));
  dir.write("blob/" + kHash, bytes(100000));
  dir.write("config.json", "{}");
  EvidenceServer server(dir.path());

  auto checkpoint = server.get("/evidence/checkpoint?cache-buster=1");
  CHECK(checkpoint.result_int() == 200);
  CHECK(checkpoint.body() == "driftwatch/n\n1\nAAAA\n\n— n x\n");
  CHECK(field(checkpoint, http::field::content_type) == "text/plain; charset=utf-8");
  CHECK(field(checkpoint, http::field::cache_control) == "no-cache");

  auto partial = server.get("/evidence/tile/0/000.p/1");
  CHECK(partial.result_int() == 200);
  CHECK(partial.body() == bytes(32));
  CHECK(field(partial, http::field::content_type) == "application/octet-stream");
  CHECK(field(partial, http::field::cache_control) == "public, max-age=5");
  CHECK(server.off_loop_reads == 0);

  auto large = server.get("/evidence/blob/" + kHash);
  CHECK(large.result_int() == 200);
  CHECK(large.body() == bytes(100000));
  CHECK(field(large, http::field::cache_control) == "public, max-age=31536000, immutable");
  CHECK(server.off_loop_reads == 1);

  CHECK(server.get("/evidence/blob/" + std::string(64, 'b')).result_int() == 404);
  // Percent-decoded before it is parsed: still "..".
  CHECK(server.get("/evidence/%2e%2e/config.json").result_int() == 400);
  CHECK(server.get("/evidence/../config.json").result_int() == 400);
  CHECK(server.get("/evidence/config.json").result_int() == 404);
  CHECK(server.get("/evidence/").result_int() == 404);
}

TEST_CASE("evidence files: a daemon without an evidence log answers 404 saying so",
          "[api][evidence]") {
  EvidenceServer server(std::nullopt);
  auto answer = server.get("/evidence/checkpoint");
  CHECK(answer.result_int() == 404);
  CHECK_THAT(answer.body(), Contains("serves no evidence log"));
}
