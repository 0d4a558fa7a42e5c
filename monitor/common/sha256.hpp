#pragma once
// SHA-256 through OpenSSL's EVP interface.

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace driftwatch {

using Sha256Digest = std::array<uint8_t, 32>;

Sha256Digest sha256(std::string_view bytes);
/// Lowercase hex of a digest.
std::string to_hex(const Sha256Digest& digest);
/// Lowercase hex of bytes.
std::string to_hex(std::string_view bytes);
/// The bytes of lowercase hex digits in pairs; nullopt for anything else.
std::optional<std::string> from_hex(std::string_view hex);
/// A digest from 64 lowercase hex digits; nullopt for anything else.
std::optional<Sha256Digest> digest_from_hex(std::string_view hex);
/// Lowercase hex SHA-256 of bytes.
std::string sha256_hex(std::string_view bytes);

/// Incremental hashing for large inputs (an executable's bytes).
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void update(std::string_view bytes);
  Sha256Digest finish();

 private:
  void* ctx_;  // EVP_MD_CTX*
};

}  // namespace driftwatch
