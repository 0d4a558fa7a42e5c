// C2SP signed notes and checkpoints, against the examples of the spec and
// of Go's golang.org/x/mod/sumdb/note.

#include "evidence/note.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "common/crypto.hpp"

using namespace driftwatch;
using namespace driftwatch::evidence;

namespace {

const std::string kPeterVkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const std::string kPeterText =
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n";
const std::string kPeterSig =
    "\xe2\x80\x94 PeterNeumann "
    "x08go/ZJkuBS9UG/"
    "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n";
const std::string kEnochSig =
    "\xe2\x80\x94 EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/"
    "5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n";

NoteSigner peter_signer() {
  // Go's example private key: base64(0x01 || 32-byte seed).
  auto seed = base64_decode("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz");
  REQUIRE(seed);
  auto key = Ed25519PrivateKey::from_raw(seed->substr(1));
  REQUIRE(key);
  auto signer = NoteSigner::make("PeterNeumann", *key);
  REQUIRE(signer);
  return *signer;
}

NoteVerifier peter() {
  auto verifier = NoteVerifier::parse(kPeterVkey);
  REQUIRE(verifier);
  return *verifier;
}

}  // namespace

TEST_CASE("note: signs exactly as Go's sumdb/note example", "[evidence]") {
  const NoteSigner signer = peter_signer();
  CHECK(signer.vkey() == kPeterVkey);
  auto signed_note = signer.sign(kPeterText);
  REQUIRE(signed_note);
  CHECK(*signed_note == kPeterText + "\n" + kPeterSig);
  CHECK_FALSE(signer.sign("no final newline"));
  CHECK_FALSE(signer.sign("a\x01 control\n"));
}

TEST_CASE("note: the spec's example verifier key verifies the spec's example note", "[evidence]") {
  auto verifier =
      NoteVerifier::parse("example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k");
  REQUIRE(verifier);
  const std::string note =
      "This is an example message.\n\n\xe2\x80\x94 example.com/foo "
      "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM="
      "\n";
  auto opened = open_note(note, std::span(&*verifier, 1));
  REQUIRE(opened);
  CHECK(opened->text == "This is an example message.\n");
}

TEST_CASE("note: verifier keys are parsed strictly", "[evidence]") {
  CHECK(peter().name() == "PeterNeumann");
  CHECK(peter().key_hash() == 0xc74f20a3u);
  CHECK(peter().vkey() == kPeterVkey);
  for (const char* bad :
       {"PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3", "", "+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW+x"}) {
    INFO(bad);
    CHECK_FALSE(NoteVerifier::parse(bad));
  }
  // The base64 key may hold '+' (one key in 64 has one): found by a random key.
  const std::string plus_key =
      base64_decode("AW5hkrrRzbZwG3hNOtVJ+72GGyqU8aPVMytmeT7wg0uu").value();
  REQUIRE(plus_key.size() == 33);
  auto with_plus = Ed25519PublicKey::from_raw(plus_key.substr(1));
  REQUIRE(with_plus);
  const std::string plus_vkey = verifier_key("driftwatch/n", *with_plus);
  CHECK(plus_vkey.find('+', plus_vkey.find('+', plus_vkey.find('+') + 1) + 1) != std::string::npos);
  auto parsed_plus = NoteVerifier::parse(plus_vkey);
  INFO((parsed_plus ? std::string() : parsed_plus.error().message));
  REQUIRE(parsed_plus);
  CHECK(parsed_plus->vkey() == plus_vkey);
  // A trailing newline (as node.vkey holds it) is fine.
  CHECK(NoteVerifier::parse(kPeterVkey + "\n"));
}

TEST_CASE("note: opening ignores unknown keys and refuses a bad known signature", "[evidence]") {
  const NoteVerifier verifier = peter();
  const std::span<const NoteVerifier> known(&verifier, 1);
  auto both = open_note(kPeterText + "\n" + kEnochSig + kPeterSig + kPeterSig, known);
  REQUIRE(both);
  CHECK(both->signatures.size() == 1);
  CHECK(both->signatures[0].name == "PeterNeumann");

  auto only_unknown = open_note(kPeterText + "\n" + kEnochSig, known);
  REQUIRE_FALSE(only_unknown);
  CHECK(only_unknown.error().failure == NoteFailure::kUnknownKey);
  CHECK_THAT(only_unknown.error().message, Catch::Contains("EnochRoot+af0cfe78"));

  std::string changed = kPeterText;
  changed[3] = 'X';
  auto forged = open_note(changed + "\n" + kPeterSig, known);
  REQUIRE_FALSE(forged);
  CHECK(forged.error().failure == NoteFailure::kBadSignature);

  // Same name, other key hash: unknown, ignored.
  std::string other_hash = kPeterSig;
  other_hash.replace(other_hash.find("x08go"), 5, "y08go");
  auto ignored = open_note(kPeterText + "\n" + other_hash, known);
  REQUIRE_FALSE(ignored);
  CHECK(ignored.error().failure == NoteFailure::kUnknownKey);
}

TEST_CASE("note: malformed notes are refused as Go refuses them", "[evidence]") {
  const NoteVerifier verifier = peter();
  const std::span<const NoteVerifier> known(&verifier, 1);
  const std::string sig_no_newline = kPeterSig.substr(0, kPeterSig.size() - 1);
  for (const std::string& bad : std::vector<std::string>{
           kPeterText, kPeterText + "\n", kPeterText + "\n" + sig_no_newline,
           "\x01" + kPeterText + "\n" + kPeterSig, "\xff" + kPeterText + "\n" + kPeterSig,
           kPeterText + "\n" +
               "\xe2\x80\x94 Bad Name "
               "x08go/ZJkuBS9UG/"
               "SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=",
           kPeterText + "\n" + kPeterSig + "Unexpected line.\n",
           kPeterText + "\n" + "- PeterNeumann x08go/ZJku\n",
           kPeterText + "\n" + "\xe2\x80\x94 PeterNeumann AAAA\n",
           kPeterText + "\r\n" + kPeterSig}) {
    INFO(bad);
    auto opened = open_note(bad, known);
    REQUIRE_FALSE(opened);
    CHECK(opened.error().failure == NoteFailure::kMalformed);
  }
  std::string many = kPeterText + "\n";
  for (int i = 0; i < 101; ++i) many += kEnochSig;
  auto too_many = open_note(many, known);
  REQUIRE_FALSE(too_many);
  CHECK(too_many.error().failure == NoteFailure::kMalformed);
}

TEST_CASE("note: checkpoints format and parse as tlog-checkpoint", "[evidence]") {
  const std::string text =
      "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
  auto checkpoint = parse_checkpoint(text);
  REQUIRE(checkpoint);
  CHECK(checkpoint->origin == "example.com/behind-the-sofa");
  CHECK(checkpoint->size == 20852163);
  CHECK(hash_base64(checkpoint->root) == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=");
  CHECK(format_checkpoint(*checkpoint) == text);

  auto with_extension = parse_checkpoint(text + "ext line\n");
  REQUIRE(with_extension);
  CHECK(with_extension->extensions == std::vector<std::string>{"ext line"});
  CHECK(format_checkpoint(*with_extension) == text + "ext line\n");
  CHECK(parse_checkpoint("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"));

  for (const std::string& bad : std::vector<std::string>{
           "o\n01\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
           "o\n-1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
           "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I\n",
           "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jx\n",
           "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=",
           "o\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n",
           "\n1\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
           "o\n18446744073709551616\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", "o\n1\n"}) {
    INFO(bad);
    CHECK_FALSE(parse_checkpoint(bad));
  }
}

TEST_CASE("note: a signed checkpoint opens with its verifier and origin", "[evidence]") {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  auto signer = NoteSigner::make(checkpoint_origin("node-1"), *key);
  REQUIRE(signer);
  Checkpoint checkpoint{checkpoint_origin("node-1"), 7, leaf_hash("x"), {}};
  auto note = signer->sign(format_checkpoint(checkpoint));
  REQUIRE(note);
  const NoteVerifier verifier = signer->verifier();
  auto opened = open_checkpoint(*note, verifier, "driftwatch/node-1");
  REQUIRE(opened);
  CHECK(*opened == checkpoint);
  auto wrong_origin = open_checkpoint(*note, verifier, "driftwatch/node-2");
  REQUIRE_FALSE(wrong_origin);
  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  auto other_verifier = NoteVerifier::make(checkpoint_origin("node-1"), other->public_key());
  REQUIRE(other_verifier);
  auto wrong_key = open_checkpoint(*note, *other_verifier);
  REQUIRE_FALSE(wrong_key);
  CHECK(wrong_key.error().failure == NoteFailure::kUnknownKey);
  CHECK_FALSE(NoteSigner::make("driftwatch/node 1", *key));
}
