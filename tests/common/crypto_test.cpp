#include "common/crypto.hpp"

#include <string>

#include <catch2/catch.hpp>

#include "common/sha256.hpp"

using driftwatch::base64_decode;
using driftwatch::base64_encode;
using driftwatch::Ed25519PrivateKey;
using driftwatch::Ed25519PublicKey;
using driftwatch::sha256_hex;

namespace {

std::string from_hex(std::string_view hex) {
  return driftwatch::from_hex(hex).value();
}
using driftwatch::to_hex;

// RFC 8032 section 7.1, TEST 1: the empty message.
constexpr std::string_view kRfc8032Secret =
    "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
constexpr std::string_view kRfc8032Public =
    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
constexpr std::string_view kRfc8032Signature =
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

// Made with `openssl genpkey`: other key types and an encrypted key.
constexpr const char* kEcP256PublicPem = R"(-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBzL7JJJxMjTzqldw+doDP44o4WuB
fyj5Snvy5eF9+MqPUkD5Myd/10zDCK+49Xz81hqCo116mKRowP9nAtmCGg==
-----END PUBLIC KEY-----
)";
constexpr const char* kEcP256PrivatePem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQganbj5WoV7QsWri7r
O3pvx6d+eHFJ1/puV8lwKG8O+WyhRANCAAQHMvskknEyNPOqV3D52gM/jijha4F/
KPlKe/Ll4X34yo9SQPkzJ3/XTMMIr7j1fPzWGoKjXXqYpGjA/2cC2YIa
-----END PRIVATE KEY-----
)";
constexpr const char* kEd448PublicPem = R"(-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoA7a2MJb15YqxC4nAYm5Tm2Rwkj6E44a5sIBELQw85ChRAH0tE
+87wXNo5ShvGBITRyLOyDDlCX2UA
-----END PUBLIC KEY-----
)";
constexpr const char* kEncryptedEd25519Pem = R"(-----BEGIN ENCRYPTED PRIVATE KEY-----
MIGbMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAj59JPNfFML8QICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEASoEEA9nVq4NSLHtuAVJFHoay3IEQMTv
wSuyh4f8jrvRRHZfTURV8TAO/qz2eWZJDdOGXHVO0s3Ty6ALFPOnWWR5+oUSqmvN
nUBPqD/Wuck/39QXPYc=
-----END ENCRYPTED PRIVATE KEY-----
)";

}  // namespace

TEST_CASE("crypto: RFC 8032 test vector 1 signs and verifies the empty message", "[common]") {
  auto secret = Ed25519PrivateKey::from_raw(from_hex(kRfc8032Secret));
  REQUIRE(secret);
  CHECK(to_hex(secret->public_key().raw()) == kRfc8032Public);
  // Ed25519 is deterministic: the same key and message give the RFC's bytes.
  CHECK(to_hex(secret->sign("")) == kRfc8032Signature);

  auto public_key = Ed25519PublicKey::from_raw(from_hex(kRfc8032Public));
  REQUIRE(public_key);
  const std::string signature = from_hex(kRfc8032Signature);
  CHECK(public_key->verify("", signature));
  CHECK_FALSE(public_key->verify("x", signature));
  std::string flipped = signature;
  flipped[10] = static_cast<char>(flipped[10] ^ 0x01);
  CHECK_FALSE(public_key->verify("", flipped));
  CHECK_FALSE(public_key->verify("", signature.substr(0, 63)));
  CHECK_FALSE(public_key->verify("", signature + "x"));
}

TEST_CASE("crypto: raw keys of the wrong length are refused", "[common]") {
  CHECK_FALSE(Ed25519PublicKey::from_raw(std::string(31, 'a')));
  CHECK_FALSE(Ed25519PublicKey::from_raw(std::string(33, 'a')));
  CHECK_FALSE(Ed25519PrivateKey::from_raw(""));
}

TEST_CASE("crypto: keys round-trip through PEM and sign what the other side verifies", "[common]") {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  const std::string private_pem = key->pem();
  CHECK(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
  auto reloaded = Ed25519PrivateKey::from_pem(private_pem);
  REQUIRE(reloaded);
  CHECK(reloaded->public_key().raw() == key->public_key().raw());

  const std::string public_pem = key->public_key().pem();
  CHECK(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
  auto public_key = Ed25519PublicKey::from_pem(public_pem);
  REQUIRE(public_key);
  CHECK(public_key->keyid() == key->public_key().keyid());

  const std::string signature = reloaded->sign("launch L-1");
  CHECK(signature.size() == 64);
  CHECK(public_key->verify("launch L-1", signature));
  CHECK_FALSE(public_key->verify("launch L-2", signature));

  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  CHECK(other->public_key().keyid() != public_key->keyid());
  CHECK_FALSE(other->public_key().verify("launch L-1", signature));
}

TEST_CASE("crypto: the key id is the hex SHA-256 of the DER SubjectPublicKeyInfo", "[common]") {
  auto key = Ed25519PublicKey::from_raw(from_hex(kRfc8032Public));
  REQUIRE(key);
  const std::string der = key->der_spki();
  // RFC 8410: SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING key }.
  CHECK(to_hex(der) == std::string("302a300506032b6570032100") + std::string(kRfc8032Public));
  CHECK(key->keyid() == sha256_hex(der));
  CHECK(key->keyid().size() == 64);
}

TEST_CASE("crypto: PEM input that is not an Ed25519 key is refused with a reason", "[common]") {
  auto ec = Ed25519PublicKey::from_pem(kEcP256PublicPem);
  REQUIRE_FALSE(ec);
  CHECK_THAT(ec.error().message, Catch::Contains("not Ed25519"));
  CHECK_FALSE(Ed25519PublicKey::from_pem(kEd448PublicPem));
  CHECK_FALSE(Ed25519PrivateKey::from_pem(kEcP256PrivatePem));
  CHECK_FALSE(Ed25519PublicKey::from_pem("not a key"));
  CHECK_FALSE(Ed25519PublicKey::from_pem(""));

  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  // A private key where a public one belongs, and the reverse.
  CHECK_FALSE(Ed25519PublicKey::from_pem(key->pem()));
  CHECK_FALSE(Ed25519PrivateKey::from_pem(key->public_key().pem()));
  // An encrypted key fails at once instead of prompting for a passphrase.
  auto encrypted = Ed25519PrivateKey::from_pem(kEncryptedEd25519Pem);
  REQUIRE_FALSE(encrypted);
  CHECK_THAT(encrypted.error().message, Catch::Contains("unencrypted"));
}

TEST_CASE("crypto: a PEM key is exactly one block, with nothing but whitespace around it",
          "[common]") {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  auto other = Ed25519PrivateKey::generate();
  REQUIRE(other);
  const std::string public_pem = key->public_key().pem();
  const std::string private_pem = key->pem();

  // Whitespace around the block is fine.
  CHECK(Ed25519PublicKey::from_pem("\n\n" + public_pem + "\n\n"));
  CHECK(Ed25519PrivateKey::from_pem("\r\n" + private_pem + " \t\n"));

  // OpenSSL alone would read the first block and ignore the rest: a trust
  // entry with two keys would silently mean its first one.
  const auto refused = [](const driftwatch::Result<Ed25519PublicKey>& parsed,
                          const std::string& named) {
    REQUIRE_FALSE(parsed);
    CHECK_THAT(parsed.error().message,
               Catch::Contains("not an Ed25519 public key") && Catch::Contains(named));
  };
  refused(Ed25519PublicKey::from_pem(public_pem + other->public_key().pem()), "more than one");
  refused(Ed25519PublicKey::from_pem(public_pem + "trailing junk\n"), "text after it");
  refused(Ed25519PublicKey::from_pem("comment: cp-1\n" + public_pem), "text before it");
  // A private key after the public one: it does not end the text as a
  // public key block would.
  refused(Ed25519PublicKey::from_pem(public_pem + "\n" + other->pem()), "text after it");

  auto two_private = Ed25519PrivateKey::from_pem(private_pem + other->pem());
  REQUIRE_FALSE(two_private);
  CHECK_THAT(two_private.error().message, Catch::Contains("more than one"));
  auto private_junk = Ed25519PrivateKey::from_pem(private_pem + "junk");
  REQUIRE_FALSE(private_junk);
  CHECK_THAT(private_junk.error().message, Catch::Contains("text after it"));
  CHECK_FALSE(Ed25519PrivateKey::from_pem("junk\n" + private_pem));
}

TEST_CASE("crypto: text after the END line is refused even when it ends like a PEM block",
          "[common]") {
  auto key = Ed25519PrivateKey::generate();
  REQUIRE(key);
  const std::string pem = key->public_key().pem();
  // Ends with the END line, holds one BEGIN: still junk after the first END.
  auto parsed = Ed25519PublicKey::from_pem(pem + "junk\n-----END PUBLIC KEY-----\n");
  CHECK_FALSE(parsed);
  auto doubled = Ed25519PrivateKey::from_pem(key->pem() + "-----END PRIVATE KEY-----\n");
  CHECK_FALSE(doubled);
}

TEST_CASE("crypto: an empty key verifies nothing", "[common]") {
  Ed25519PublicKey empty;
  CHECK_FALSE(empty.verify("", std::string(64, '\0')));
  CHECK(empty.keyid().empty());
}

TEST_CASE("base64: encodes the RFC 4648 test vectors", "[common]") {
  CHECK(base64_encode("") == "");
  CHECK(base64_encode("f") == "Zg==");
  CHECK(base64_encode("fo") == "Zm8=");
  CHECK(base64_encode("foo") == "Zm9v");
  CHECK(base64_encode("foob") == "Zm9vYg==");
  CHECK(base64_encode("fooba") == "Zm9vYmE=");
  CHECK(base64_encode("foobar") == "Zm9vYmFy");
  CHECK(base64_encode(std::string("\xfb\xff\xbf", 3)) == "+/+/");
}

TEST_CASE("base64: every byte string decodes back to itself", "[common]") {
  std::string all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<char>(i));
  for (size_t length = 0; length <= all.size(); length += 37) {
    const std::string bytes = all.substr(0, length);
    auto decoded = base64_decode(base64_encode(bytes));
    REQUIRE(decoded);
    CHECK(*decoded == bytes);
  }
  CHECK(*base64_decode("Zm9vYmE=") == "fooba");
  CHECK(*base64_decode("") == "");
}

TEST_CASE("base64: decoding is strict about padding, alphabet and whitespace", "[common]") {
  for (const char* bad : {"Zg", "Zg=", "Zm9vY", "Zm9v\n", " Zm9v", "Zm9v YmFy", "Zm-v", "Zm_v",
                          "Z===", "=Zg=", "Zg==Zg==", "Zm=v", "Zh==", "Zm9=", "====", "Zg\r\n=="}) {
    INFO("input: " << bad);
    CHECK_FALSE(base64_decode(bad));
  }
  auto error = base64_decode("Zm9v*A==");
  REQUIRE_FALSE(error);
  CHECK_THAT(error.error().message, Catch::Contains("'*'") && Catch::Contains("offset 4"));
}
