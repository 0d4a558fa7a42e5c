#include "ingest/trust.hpp"
#include "support/fifo_deadline.hpp"

using driftwatch::testing::within_deadline;

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace driftwatch::ingest;
using driftwatch::Ed25519PrivateKey;
using driftwatch::Ed25519PublicKey;
using nlohmann::json;

namespace {

Ed25519PublicKey new_public_key() {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  return key->public_key();
}

json entry(const std::string& name, const Ed25519PublicKey& key) {
  return json{{"name", name}, {"public_key_pem", key.pem()}};
}

void require_refused(const json& doc, const std::string& named) {
  INFO("trust.json: " << doc.dump());
  auto store = TrustStore::parse(doc.dump(), "trust.json");
  REQUIRE_FALSE(store);
  CHECK_THAT(store.error().message, Catch::StartsWith("trust.json"));
  CHECK_THAT(store.error().message, Catch::Contains(named));
}

}  // namespace

TEST_CASE("trust: keys are found by key id with their name and role", "[ingest]") {
  const auto cp = new_public_key();
  const auto alice = new_public_key();
  const auto bob = new_public_key();
  const json doc = {{"control_plane", {entry("cp-1", cp)}},
                    {"operator", {entry("alice", alice), entry("bob", bob)}}};
  auto store = TrustStore::parse(doc.dump(), "trust.json");
  REQUIRE(store);
  CHECK(store->size() == 3);
  CHECK(store->count(TrustRole::control_plane) == 1);
  CHECK(store->count(TrustRole::operator_) == 2);

  const TrustedKey* found = store->find(cp.keyid());
  REQUIRE(found != nullptr);
  CHECK(found->name == "cp-1");
  CHECK(found->role == TrustRole::control_plane);
  CHECK(found->keyid == cp.keyid());
  CHECK(found->key.raw() == cp.raw());

  found = store->find(bob.keyid());
  REQUIRE(found != nullptr);
  CHECK(found->name == "bob");
  CHECK(found->role == TrustRole::operator_);
  CHECK(store->find(new_public_key().keyid()) == nullptr);
  CHECK(store->find("") == nullptr);
  CHECK(to_string(TrustRole::control_plane) == "control_plane");
  CHECK(to_string(TrustRole::operator_) == "operator");
}

TEST_CASE("trust: an absent role holds no keys, and an empty store trusts nothing", "[ingest]") {
  const auto cp = new_public_key();
  auto only_cp = TrustStore::parse(json{{"control_plane", {entry("cp-1", cp)}}}.dump(), "t");
  REQUIRE(only_cp);
  CHECK(only_cp->count(TrustRole::operator_) == 0);
  auto empty = TrustStore::parse("{}", "t");
  REQUIRE(empty);
  CHECK(empty->empty());
  CHECK(TrustStore().empty());
}

TEST_CASE("trust: a key in both roles is refused naming both entries", "[ingest]") {
  const auto key = new_public_key();
  const json doc = {{"control_plane", {entry("cp-1", key)}}, {"operator", {entry("alice", key)}}};
  require_refused(doc, "operator[0] (alice)");
  require_refused(doc, "control_plane (cp-1)");
  require_refused(doc, "one role");
}

TEST_CASE("trust: duplicate names and keys listed twice are refused", "[ingest]") {
  const auto a = new_public_key();
  const auto b = new_public_key();
  require_refused({{"control_plane", {entry("cp-1", a)}}, {"operator", {entry("cp-1", b)}}},
                  "name \"cp-1\" is already used in control_plane");
  require_refused({{"operator", {entry("alice", a), entry("alice2", a)}}},
                  "listed twice in operator");
}

TEST_CASE("trust: wrong shapes and keys are refused naming the entry", "[ingest]") {
  const auto key = new_public_key();
  require_refused({{"control_plane", {entry("cp-1", key)}}, {"operators", json::array()}},
                  "unknown key \"operators\"");
  require_refused({{"control_plane", entry("cp-1", key)}}, "\"control_plane\" must be an array");
  require_refused({{"control_plane", {"cp-1"}}}, "control_plane[0] must be an object");
  require_refused({{"control_plane", {{{"name", "cp-1"}}}}}, "control_plane[0] (cp-1)");
  require_refused({{"control_plane", {{{"public_key_pem", key.pem()}}}}}, "non-empty \"name\"");
  require_refused({{"control_plane", {entry("", key)}}}, "non-empty \"name\"");
  json extra = entry("cp-1", key);
  extra["keyid"] = key.keyid();
  require_refused({{"control_plane", {extra}}}, "unknown key \"keyid\"");
  require_refused({{"operator", {json{{"name", "alice"}, {"public_key_pem", "garbage"}}}}},
                  "operator[0] (alice): not a PEM public key");
  const std::string ec_pem =
      "-----BEGIN PUBLIC KEY-----\n"
      "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBzL7JJJxMjTzqldw+doDP44o4WuB\n"
      "fyj5Snvy5eF9+MqPUkD5Myd/10zDCK+49Xz81hqCo116mKRowP9nAtmCGg==\n"
      "-----END PUBLIC KEY-----\n";
  require_refused({{"operator", {json{{"name", "alice"}, {"public_key_pem", ec_pem}}}}},
                  "not Ed25519");
  require_refused(json::array(), "JSON object");

  auto not_json = TrustStore::parse("{\"control_plane\": [", "/etc/driftwatch/trust.json");
  REQUIRE_FALSE(not_json);
  CHECK_THAT(not_json.error().message, Catch::Contains("/etc/driftwatch/trust.json"));
}

TEST_CASE("trust: load reads a file and names it when it cannot", "[ingest]") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("driftwatch-trust-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "trust.json";
  const auto key = new_public_key();
  std::ofstream(path) << json{{"control_plane", {entry("cp-1", key)}}}.dump(2);
  auto store = TrustStore::load(path);
  REQUIRE(store);
  CHECK(store->find(key.keyid()) != nullptr);

  auto missing = TrustStore::load(dir / "absent.json");
  REQUIRE_FALSE(missing);
  CHECK_THAT(missing.error().message, Catch::Contains((dir / "absent.json").string()));
  std::filesystem::remove_all(dir);
}

namespace {}  // namespace

TEST_CASE("trust: load refuses a FIFO at once, a link and a directory, naming them", "[ingest]") {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("driftwatch-trust-types-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{dir};

  const auto fifo = dir / "fifo.json";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  const auto from_fifo = within_deadline([&] { return TrustStore::load(fifo); }, fifo);
  INFO("TrustStore::load blocked in open(2) on the FIFO until a writer came");
  REQUIRE(from_fifo.has_value());
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(2));
  REQUIRE_FALSE(from_fifo->has_value());
  CHECK(from_fifo->error().message ==
        "trust file " + fifo.string() + " is a FIFO, not a regular file");

  // A link to a valid trust file: refused all the same, not followed.
  const auto real = dir / "real.json";
  std::ofstream(real) << json{{"control_plane", {entry("cp-1", new_public_key())}}}.dump();
  REQUIRE(TrustStore::load(real).has_value());
  const auto link = dir / "trust.json";
  std::filesystem::create_symlink(real, link);
  const auto linked = TrustStore::load(link);
  REQUIRE_FALSE(linked.has_value());
  CHECK(linked.error().message ==
        "trust file " + link.string() + " is a symbolic link; name the file itself");

  const auto directory = TrustStore::load(dir);
  REQUIRE_FALSE(directory.has_value());
  CHECK(directory.error().message ==
        "trust file " + dir.string() + " is a directory, not a regular file");
}

TEST_CASE("trust: an entry holding two PEM keys or text around its key is refused", "[ingest]") {
  const auto key = new_public_key();
  const auto other = new_public_key();
  // OpenSSL alone reads the first block and ignores the rest: the entry
  // would silently trust only its first key.
  require_refused(
      {{"control_plane", {json{{"name", "cp-1"}, {"public_key_pem", key.pem() + other.pem()}}}}},
      "control_plane[0] (cp-1): not an Ed25519 public key");
  require_refused(
      {{"operator", {json{{"name", "alice"}, {"public_key_pem", key.pem() + "trailing junk\n"}}}}},
      "operator[0] (alice): not an Ed25519 public key");
  require_refused(
      {{"operator", {json{{"name", "alice"}, {"public_key_pem", "# alice\n" + key.pem()}}}}},
      "operator[0] (alice): not an Ed25519 public key");
  // The same key with only whitespace around it is fine.
  auto store = TrustStore::parse(
      json{{"operator", {json{{"name", "alice"}, {"public_key_pem", "\n" + key.pem() + "\n\n"}}}}}
          .dump(),
      "trust.json");
  REQUIRE(store);
  CHECK(store->find(key.keyid()) != nullptr);
}

TEST_CASE("trust: load refuses a trust file whose entry holds two keys", "[ingest]") {
  std::string pattern =
      (std::filesystem::temp_directory_path() / "driftwatch-trust-two-XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  const std::filesystem::path dir = pattern;
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{dir};
  const auto key = new_public_key();
  const auto other = new_public_key();
  const auto path = dir / "trust.json";
  std::ofstream(path) << json{{"control_plane",
                               {json{{"name", "cp-1"},
                                     {"public_key_pem", key.pem() + other.pem()}}}}}
                             .dump();
  auto store = TrustStore::load(path);
  REQUIRE_FALSE(store);
  CHECK_THAT(store.error().message,
             Catch::Contains(path.string()) && Catch::Contains("more than one"));
}

TEST_CASE("trust: add_trusted_key makes a file that loads, and refuses what load refuses",
          "[ingest]") {
  const Ed25519PublicKey cp = new_public_key();
  const Ed25519PublicKey alice = new_public_key();
  auto first = add_trusted_key(std::nullopt, TrustRole::control_plane, "cp-1", cp.pem());
  REQUIRE(first);
  auto second = add_trusted_key(*first, TrustRole::operator_, "alice", alice.pem());
  REQUIRE(second);
  auto store = TrustStore::parse(*second, "added");
  REQUIRE(store);
  REQUIRE(store->find(cp.keyid()) != nullptr);
  CHECK(store->find(cp.keyid())->name == "cp-1");
  CHECK(store->find(cp.keyid())->role == TrustRole::control_plane);
  CHECK(store->find(alice.keyid())->role == TrustRole::operator_);
  // Keys already there stay first and as they were.
  CHECK(json::parse(*second)["control_plane"] == json::parse(*first)["control_plane"]);

  auto private_key = Ed25519PrivateKey::generate();
  REQUIRE(private_key);
  const struct {
    std::optional<std::string> existing;
    TrustRole role;
    std::string name, pem;
    const char* says;
  } refused[] = {
      {*second, TrustRole::operator_, "cp-again", cp.pem(), "may hold only one role"},
      {*second, TrustRole::control_plane, "cp-2", cp.pem(), "listed twice"},
      {*second, TrustRole::control_plane, "alice", new_public_key().pem(), "already used"},
      {*second, TrustRole::operator_, "bob", private_key->pem(), "is a private key"},
      {*second, TrustRole::operator_, "bob", "", "public key"},
      {std::string("{\"operator\": {}}"), TrustRole::operator_, "bob", alice.pem(), "array"},
      {std::string("not json"), TrustRole::operator_, "bob", alice.pem(), "trust file"},
  };
  for (const auto& r : refused) {
    auto added = add_trusted_key(r.existing, r.role, r.name, r.pem);
    INFO(r.name << ": " << (added ? *added : added.error().message));
    REQUIRE_FALSE(added);
    CHECK_THAT(added.error().message, Catch::Contains(r.says));
  }
  CHECK(parse_trust_role("control_plane") == TrustRole::control_plane);
  CHECK(parse_trust_role("operator") == TrustRole::operator_);
  CHECK_FALSE(parse_trust_role("launch"));
}

TEST_CASE("trust: the example trust file in deploy/examples loads with one key per role",
          "[ingest]") {
  const auto path = std::filesystem::path(DRIFTWATCH_FIXTURES).parent_path().parent_path() /
                    "deploy" / "examples" / "trust.json";
  auto store = TrustStore::load(path);
  INFO((store ? "" : store.error().message));
  REQUIRE(store);
  CHECK(store->count(TrustRole::control_plane) == 1);
  CHECK(store->count(TrustRole::operator_) == 1);
}
