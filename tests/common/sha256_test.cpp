#include "common/sha256.hpp"

#include <string>

#include <catch2/catch.hpp>

using driftwatch::sha256;
using driftwatch::sha256_hex;
using driftwatch::Sha256Digest;
using driftwatch::Sha256Hasher;
using driftwatch::to_hex;

// Expected digests are the NIST FIPS 180-2 / CSRC example values.
namespace {
constexpr const char* kEmpty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr const char* kAbc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
constexpr const char* kTwoBlock =
    "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1";
constexpr const char* kMillionA =
    "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
constexpr const char* kTwoBlockInput = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
}  // namespace

TEST_CASE("sha256: hashes the NIST example messages", "[common]") {
  CHECK(sha256_hex("") == kEmpty);
  CHECK(sha256_hex("abc") == kAbc);
  CHECK(sha256_hex(kTwoBlockInput) == kTwoBlock);
}

TEST_CASE("sha256: hex is lowercase, two digits per byte, most significant nibble first",
          "[common]") {
  Sha256Digest digest{};
  digest[0] = 0x0f;
  digest[1] = 0xa0;
  digest[31] = 0xff;
  const std::string hex = to_hex(digest);
  CHECK(hex.size() == 64);
  CHECK(hex.substr(0, 4) == "0fa0");
  CHECK(hex.substr(60) == "00ff");
  CHECK(to_hex(sha256("abc")) == kAbc);
}

TEST_CASE("sha256: hashes bytes after a NUL and high bytes", "[common]") {
  const std::string with_nul("a\0b", 3);
  CHECK(sha256_hex(with_nul) != sha256_hex("a"));
  CHECK(sha256_hex(std::string(1, '\xff')) ==
        "a8100ae6aa1940d0b663bb31cd466142ebbdbd5187131b92d93818987832eb89");
}

TEST_CASE("sha256: the incremental hasher digests one million 'a' as NIST says", "[common]") {
  Sha256Hasher hasher;
  const std::string thousand(1000, 'a');
  for (int i = 0; i < 1000; ++i) hasher.update(thousand);
  CHECK(to_hex(hasher.finish()) == kMillionA);
}

TEST_CASE("sha256: the incremental hasher agrees with the one-shot hash for any split",
          "[common]") {
  const std::string input = kTwoBlockInput;
  for (std::size_t split = 0; split <= input.size(); ++split) {
    Sha256Hasher hasher;
    hasher.update(std::string_view(input).substr(0, split));
    hasher.update("");
    hasher.update(std::string_view(input).substr(split));
    CHECK(to_hex(hasher.finish()) == kTwoBlock);
  }
}

TEST_CASE("sha256: a hasher starts over after finish", "[common]") {
  Sha256Hasher hasher;
  hasher.update("abc");
  CHECK(to_hex(hasher.finish()) == kAbc);
  CHECK(to_hex(hasher.finish()) == kEmpty);
  hasher.update("ab");
  hasher.update("c");
  CHECK(to_hex(hasher.finish()) == kAbc);
}
