// Interop on the real thing: envelopes from an independent DSSE
// implementation (Python's `cryptography`, through sign_envelope.py) are
// accepted by the ingestor, and driftwatch's envelopes, keys and verifier key
// strings check out in it. Skips with a warning where python3 or its
// cryptography module is missing.

#include <sys/stat.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "app/keys.hpp"
#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "common/sha256.hpp"
#include "ingest/ingestor.hpp"
#include "support/process_guard.hpp"

using namespace driftwatch;
using namespace driftwatch::testing;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Next to this file in the source tree (CMake passes absolute paths, so
// __FILE__ is one).
fs::path script_path() {
  return fs::path(__FILE__).parent_path() / "sign_envelope.py";
}

// True when python3 with the cryptography module is there; warns otherwise.
bool have_python_cryptography() {
  if (have_tool("python3").empty()) {
    WARN("skipped: python3 is not installed");
    return false;
  }
  const auto probe =
      run_command({"python3", "-c", "import cryptography.hazmat.primitives.asymmetric.ed25519"});
  if (probe.exit_code != 0) {
    std::string why = probe.err;
    while (!why.empty() && why.back() == '\n') why.pop_back();
    why = why.substr(why.rfind('\n') == std::string::npos ? 0 : why.rfind('\n') + 1);
    WARN("skipped: python3 cannot import cryptography (Debian: python3-cryptography): " << why);
    return false;
  }
  REQUIRE(fs::exists(script_path()));
  return true;
}

CommandResult run_script(std::vector<std::string> args) {
  args.insert(args.begin(), {"python3", script_path().string()});
  return run_command(args);
}

json script_json(const std::vector<std::string>& args) {
  const auto result = run_script(args);
  INFO("sign_envelope.py " << describe_command(args) << "\nstdout: " << result.out
                           << "\nstderr: " << result.err);
  REQUIRE(result.exit_code == 0);
  auto doc = json::parse(result.out, nullptr, false);
  REQUIRE_FALSE(doc.is_discarded());
  return doc;
}

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "driftwatch-interop-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& path, const std::string& content) {
  std::ofstream(path, std::ios::binary) << content;
}

ingest::TrustStore trust_of(const std::string& control_plane_pem,
                            const std::string& operator_pem = {}) {
  json doc = {
      {"control_plane", json::array({{{"name", "cp-1"}, {"public_key_pem", control_plane_pem}}})}};
  if (!operator_pem.empty()) {
    doc["operator"] = json::array({{{"name", "alice"}, {"public_key_pem", operator_pem}}});
  }
  auto trust = ingest::TrustStore::parse(doc.dump(), "interop trust");
  REQUIRE(trust);
  return *trust;
}

std::string now_rfc3339() {
  return ingest::format_rfc3339(static_cast<int64_t>(std::time(nullptr)));
}

std::string config_hash(const json& config) {
  auto canonical = canonical_json(config);
  REQUIRE(canonical);
  return sha256_hex(*canonical);
}

// A config whose keys sort differently by UTF-16 code unit (JCS) than by
// code point: U+1F600 is the surrogate pair D83D DE00, before U+E000.
json tricky_config() {
  return json::parse(R"({
    "ociVersion": "1.0.2",
    "annotations": {"\ue000": "private use", "\ud83d\ude00": "grin", "caf\u00e9": "\u00e9t\u00e9",
                    "tab": "a\tb", "quote": "\"q\"", "ctl": "\u001f"},
    "process": {"args": ["sh", "-c", "sleep 1"], "user": {"uid": 1000, "gid": 1000}},
    "linux": {"resources": {"memory": {"limit": 134217728}}}
  })");
}

// Captures std::cout and std::cerr for a driftwatch command run in-process.
class CapturedOutput {
 public:
  CapturedOutput()
      : old_out_(std::cout.rdbuf(out_.rdbuf())), old_err_(std::cerr.rdbuf(err_.rdbuf())) {}
  ~CapturedOutput() {
    std::cout.rdbuf(old_out_);
    std::cerr.rdbuf(old_err_);
  }
  CapturedOutput(const CapturedOutput&) = delete;
  CapturedOutput& operator=(const CapturedOutput&) = delete;
  std::string out() const { return out_.str(); }
  std::string err() const { return err_.str(); }

 private:
  std::ostringstream out_;
  std::ostringstream err_;
  std::streambuf* old_out_;
  std::streambuf* old_err_;
};

struct CommandOutput {
  int exit_code;
  std::string out;
  std::string err;
};

template <class Command>
CommandOutput run_in_process(Command command) {
  CapturedOutput captured;
  const int exit_code = command();
  return {exit_code, captured.out(), captured.err()};
}

}  // namespace

TEST_CASE("interop: a launch event signed with Python's cryptography is accepted", "[interop]") {
  if (!have_python_cryptography()) return;
  TempDir dir;
  const json demo = script_json({"demo-launch", dir.path().string(), "--issued-at", now_rfc3339()});
  const std::string pem = demo.at("public_key_pem");
  auto key = Ed25519PublicKey::from_pem(pem);
  REQUIRE(key);
  // Both sides agree on the key id: SHA-256 of the DER SubjectPublicKeyInfo.
  CHECK(key->keyid() == demo.at("keyid"));

  ingest::Ingestor ingestor(trust_of(pem), {});
  const auto outcome = ingestor.ingest(demo.at("envelope").get<std::string>(),
                                       ingest::EnvelopeKind::launch, std::time(nullptr));
  INFO(outcome.reason);
  REQUIRE(outcome.result == ingest::IngestResult::accepted);
  const ingest::LaunchRecord* launch = ingestor.launch_for_sandbox("py-agent");
  REQUIRE(launch != nullptr);
  CHECK(launch->launch_id == "L-py-0001");
  CHECK(launch->signed_by == "cp-1");
  // Python's canonical JSON of the config hashed as ours does.
  CHECK(launch->config_sha256 == config_hash(demo.at("payload").at("config")));
}

TEST_CASE("interop: sign_envelope.py keygen and sign make launches and grants we accept",
          "[interop]") {
  if (!have_python_cryptography()) return;
  TempDir dir;
  const json cp = script_json({"keygen", dir.path().string(), "cp-1"});
  const json alice = script_json({"keygen", dir.path().string(), "alice"});
  struct stat st {};
  REQUIRE(::stat((dir.path() / "cp-1.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // Python's verifier key string is ours, for its key.
  auto cp_key = Ed25519PublicKey::from_pem(read_file(dir.path() / "cp-1.pub"));
  REQUIRE(cp_key);
  CHECK(cp.at("keyid") == cp_key->keyid());
  CHECK(cp.at("vkey") == app::note_verifier_key("cp-1", *cp_key));
  CHECK(read_file(dir.path() / "cp-1.vkey") == app::note_verifier_key("cp-1", *cp_key) + "\n");

  // config_sha256 is left out: the script fills it in with its own JCS.
  const json launch = {{"launch_id", "L-7"},      {"sandbox_id", "agent-7"},
                       {"runtime", "crun"},       {"issued_at", now_rfc3339()},
                       {"requested_by", "ci:42"}, {"config", tricky_config()}};
  json grant = {{"grant_id", "G-7"},
                {"launch_id", "L-7"},
                {"issued_at", now_rfc3339()},
                {"requested_by", "oidc:alice@example.org"},
                {"approved_by", "oidc:bob@example.org"},
                {"reason", "memory limit raised for a larger model"},
                {"config", tricky_config()}};
  grant["config"]["linux"]["resources"]["memory"]["limit"] = 268435456;
  write_file(dir.path() / "launch.json", launch.dump(2));
  write_file(dir.path() / "grant.json", grant.dump(2));

  const auto signed_launch =
      run_script({"sign", "--key", (dir.path() / "cp-1.key").string(), "--type", "launch",
                  (dir.path() / "launch.json").string()});
  const auto signed_grant = run_script({"sign", "--key", (dir.path() / "alice.key").string(),
                                        "--type", "grant", (dir.path() / "grant.json").string()});
  INFO("launch: " << signed_launch.out << signed_launch.err);
  INFO("grant: " << signed_grant.out << signed_grant.err);
  REQUIRE(signed_launch.exit_code == 0);
  REQUIRE(signed_grant.exit_code == 0);
  // One envelope, one line: ready to append to a journal.
  CHECK(std::count(signed_launch.out.begin(), signed_launch.out.end(), '\n') == 1);

  ingest::Ingestor ingestor(trust_of(cp.at("public_key_pem"), alice.at("public_key_pem")), {});
  const auto now = static_cast<int64_t>(std::time(nullptr));
  std::string envelope = signed_launch.out.substr(0, signed_launch.out.size() - 1);
  auto outcome = ingestor.ingest(envelope, std::nullopt, now);
  INFO(outcome.reason);
  REQUIRE(outcome.result == ingest::IngestResult::accepted);
  CHECK(ingestor.launch("L-7")->config_sha256 == config_hash(tricky_config()));
  envelope = signed_grant.out.substr(0, signed_grant.out.size() - 1);
  outcome = ingestor.ingest(envelope, ingest::EnvelopeKind::grant, now);
  INFO(outcome.reason);
  REQUIRE(outcome.result == ingest::IngestResult::accepted);
  REQUIRE(ingestor.latest_grant("L-7") != nullptr);
  CHECK(ingestor.latest_grant("L-7")->signed_by == "alice");

  // And the roles hold for foreign keys too.
  outcome = ingestor.ingest(envelope, ingest::EnvelopeKind::grant, now);
  CHECK(outcome.result == ingest::IngestResult::duplicate);
  const auto wrong = run_script({"sign", "--key", (dir.path() / "alice.key").string(), "--type",
                                 "launch", (dir.path() / "launch.json").string()});
  REQUIRE(wrong.exit_code == 0);
  CHECK(ingestor.ingest(wrong.out, std::nullopt, now).result == ingest::IngestResult::wrong_role);
}

TEST_CASE("interop: envelopes signed by driftwatch verify in Python", "[interop]") {
  if (!have_python_cryptography()) return;
  TempDir dir;
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  write_file(dir.path() / "cp.pub", key->public_key().pem());

  const json payload = {{"launch_id", "L-1"},
                        {"sandbox_id", "agent-7"},
                        {"runtime", "runc"},
                        {"issued_at", now_rfc3339()},
                        {"requested_by", "oidc:alice@example.org"},
                        {"config", tricky_config()},
                        {"config_sha256", config_hash(tricky_config())}};
  auto body = canonical_json(payload);
  REQUIRE(body);
  const std::string envelope = ingest::sign_envelope(ingest::kLaunchPayloadType, *body, *key);
  write_file(dir.path() / "envelope.json", envelope);

  const json verified = script_json({"verify", "--pub", (dir.path() / "cp.pub").string(),
                                     (dir.path() / "envelope.json").string()});
  CHECK(verified.at("keyid") == key->public_key().keyid());
  CHECK(verified.at("payload_type") == ingest::kLaunchPayloadType);
  CHECK(verified.at("payload") == payload);
  // Python agrees that the config hash is right and the body canonical.
  CHECK(verified.at("config_sha256_ok") == true);
  CHECK(verified.at("payload_is_canonical") == true);

  // Tampering is caught there too.
  json tampered = json::parse(envelope);
  json other = payload;
  other["sandbox_id"] = "agent-8";
  tampered["payload"] = base64_encode(*canonical_json(other));
  write_file(dir.path() / "tampered.json", tampered.dump());
  const auto refused = run_script({"verify", "--pub", (dir.path() / "cp.pub").string(),
                                   (dir.path() / "tampered.json").string()});
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("does not verify"));
}

TEST_CASE("interop: driftwatch keygen and sign produce keys and envelopes Python checks",
          "[interop]") {
  if (!have_python_cryptography()) return;
  TempDir dir;
  const fs::path keys = dir.path() / "keys";
  auto keygen = run_in_process([&] { return app::cmd_keygen("cp-1", keys); });
  INFO("keygen stdout: " << keygen.out << "\nstderr: " << keygen.err);
  REQUIRE(keygen.exit_code == 0);
  CHECK(keygen.err.empty());
  const json summary = json::parse(keygen.out);
  struct stat st {};
  REQUIRE(::stat((keys / "cp-1.key").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  auto public_key = Ed25519PublicKey::from_pem(read_file(keys / "cp-1.pub"));
  REQUIRE(public_key);
  CHECK(summary.at("keyid") == public_key->keyid());
  CHECK(read_file(keys / "cp-1.vkey") == summary.at("vkey").get<std::string>() + "\n");
  // Python derives the same verifier key string from the public key alone.
  const auto vkey = run_script({"vkey", "--pub", (keys / "cp-1.pub").string(), "--name", "cp-1"});
  REQUIRE(vkey.exit_code == 0);
  CHECK(vkey.out == summary.at("vkey").get<std::string>() + "\n");

  // No overwriting: a second keygen changes nothing and says which file.
  const std::string private_pem = read_file(keys / "cp-1.key");
  auto again = run_in_process([&] { return app::cmd_keygen("cp-1", keys); });
  CHECK(again.exit_code == 2);
  CHECK(again.out.empty());
  CHECK_THAT(again.err, Catch::StartsWith("driftwatch: ") && Catch::Contains("cp-1.key") &&
                            Catch::EndsWith("\n"));
  CHECK(read_file(keys / "cp-1.key") == private_pem);
  CHECK(run_in_process([&] { return app::cmd_keygen("cp+1", keys); }).exit_code == 2);
  CHECK(run_in_process([&] { return app::cmd_keygen("cp 1", keys); }).exit_code == 2);

  // sign fills in config_sha256 and signs the canonical payload.
  const json payload = {{"launch_id", "L-2"},     {"sandbox_id", "agent-7"},
                        {"runtime", "runc"},      {"issued_at", now_rfc3339()},
                        {"requested_by", "ci:7"}, {"config", tricky_config()}};
  write_file(dir.path() / "launch.json", payload.dump(2));
  auto signed_launch = run_in_process(
      [&] { return app::cmd_sign(keys / "cp-1.key", "launch", dir.path() / "launch.json"); });
  INFO("sign stdout: " << signed_launch.out << "\nstderr: " << signed_launch.err);
  REQUIRE(signed_launch.exit_code == 0);
  REQUIRE(std::count(signed_launch.out.begin(), signed_launch.out.end(), '\n') == 1);
  write_file(dir.path() / "envelope.json", signed_launch.out);
  const json verified = script_json(
      {"verify", "--pub", (keys / "cp-1.pub").string(), (dir.path() / "envelope.json").string()});
  CHECK(verified.at("config_sha256_ok") == true);
  CHECK(verified.at("payload_is_canonical") == true);
  CHECK(verified.at("payload").at("config_sha256") == config_hash(tricky_config()));

  ingest::Ingestor ingestor(trust_of(public_key->pem()), {});
  const auto outcome = ingestor.ingest(signed_launch.out.substr(0, signed_launch.out.size() - 1),
                                       ingest::EnvelopeKind::launch, std::time(nullptr));
  INFO(outcome.reason);
  CHECK(outcome.result == ingest::IngestResult::accepted);

  // A wrong config_sha256 is refused, with nothing on stdout.
  json wrong = payload;
  wrong["config_sha256"] = std::string(64, '0');
  write_file(dir.path() / "wrong.json", wrong.dump());
  auto refused = run_in_process(
      [&] { return app::cmd_sign(keys / "cp-1.key", "launch", dir.path() / "wrong.json"); });
  CHECK(refused.exit_code == 2);
  CHECK(refused.out.empty());
  CHECK_THAT(refused.err, Catch::StartsWith("driftwatch: ") && Catch::Contains("wrong.json") &&
                              Catch::Contains("config_sha256"));
  CHECK(std::count(refused.err.begin(), refused.err.end(), '\n') == 1);
  auto bad_type = run_in_process(
      [&] { return app::cmd_sign(keys / "cp-1.key", "lunch", dir.path() / "launch.json"); });
  CHECK(bad_type.exit_code == 2);
  CHECK(bad_type.out.empty());
  auto not_a_key = run_in_process(
      [&] { return app::cmd_sign(keys / "cp-1.pub", "launch", dir.path() / "launch.json"); });
  CHECK(not_a_key.exit_code == 2);
  CHECK_THAT(not_a_key.err, Catch::Contains("cp-1.pub"));
}

TEST_CASE("interop: the note verifier key matches Go's sumdb/note example", "[interop]") {
  // golang.org/x/mod/sumdb/note documents this key pair; its private key
  // string carries base64(0x01 || 32-byte seed).
  auto encoded_seed = base64_decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz");
  REQUIRE(encoded_seed);
  REQUIRE(encoded_seed->size() == 33);
  auto key = Ed25519PrivateKey::from_raw(encoded_seed->substr(1));
  REQUIRE(key);
  CHECK(app::note_verifier_key("PeterNeumann", key->public_key()) ==
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW");
  CHECK(app::note_key_hash("PeterNeumann", key->public_key()) == 0xc74f20a3u);

  CHECK(app::is_valid_note_key_name("driftwatch/node-1"));
  CHECK(app::is_valid_note_key_name("n\xc3\xa9ud"));
  CHECK_FALSE(app::is_valid_note_key_name(""));
  CHECK_FALSE(app::is_valid_note_key_name("a+b"));
  CHECK_FALSE(app::is_valid_note_key_name("a b"));
  CHECK_FALSE(app::is_valid_note_key_name("a\tb"));
  CHECK_FALSE(
      app::is_valid_note_key_name("a\xc2\xa0"
                                  "b"));                      // U+00A0 no-break space
  CHECK_FALSE(app::is_valid_note_key_name("a\xe3\x80\x80"));  // U+3000 ideographic space
  CHECK_FALSE(app::is_valid_note_key_name("\xff"));           // not UTF-8
}
