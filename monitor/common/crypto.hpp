#pragma once
// Ed25519 keys and signatures (OpenSSL 3), and strict base64. Keys travel as
// PEM (PKCS#8 private, SubjectPublicKeyInfo public). A key id is the
// lowercase hex SHA-256 of the DER SubjectPublicKeyInfo (DESIGN.md).

#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace driftwatch {

/// Standard base64 with padding.
std::string base64_encode(std::string_view bytes);
/// Strict decoding: padding required, no whitespace, no other alphabets.
Result<std::string> base64_decode(std::string_view text);

class Ed25519PublicKey {
 public:
  /// From a PEM SubjectPublicKeyInfo; any other key type is an error.
  static Result<Ed25519PublicKey> from_pem(std::string_view pem);
  /// From the 32 raw key bytes.
  static Result<Ed25519PublicKey> from_raw(std::string_view raw32);

  /// Empty for a default-constructed key (which verifies nothing).
  std::string pem() const;
  std::string der_spki() const;
  std::string raw() const;  // 32 bytes
  /// Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo.
  std::string keyid() const;
  bool verify(std::string_view message, std::string_view signature) const;

 private:
  std::shared_ptr<void> key_;  // EVP_PKEY
};

class Ed25519PrivateKey {
 public:
  static Result<Ed25519PrivateKey> generate();
  static Result<Ed25519PrivateKey> from_pem(std::string_view pem);
  /// From the 32-byte private key seed (RFC 8032 "secret key").
  static Result<Ed25519PrivateKey> from_raw(std::string_view seed32);
  std::string pem() const;  // PKCS#8
  Ed25519PublicKey public_key() const;
  std::string sign(std::string_view message) const;  // 64 bytes

 private:
  std::shared_ptr<void> key_;  // EVP_PKEY
};

}  // namespace driftwatch
