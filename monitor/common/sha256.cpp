#include "common/sha256.hpp"

#include <algorithm>

#include <cstdio>
#include <cstdlib>

#include <openssl/evp.h>

namespace driftwatch {
namespace {

// OpenSSL fails here only when it is broken (no default provider, out of
// memory); no caller could recover, so this is a broken invariant, not a
// Result.
[[noreturn]] void openssl_broken(const char* step) {
  std::fprintf(stderr,
               "driftwatch: OpenSSL SHA-256 failed in %s; is the default provider loaded?\n", step);
  std::abort();
}

// Fetched once: OpenSSL 3 looks the algorithm up in its provider on every
// EVP_sha256() init otherwise.
const EVP_MD* sha256_algorithm() {
  static const EVP_MD* const algorithm = [] {
    EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (fetched == nullptr) openssl_broken("EVP_MD_fetch");
    return fetched;
  }();
  return algorithm;
}

EVP_MD_CTX* context(void* ctx) {
  return static_cast<EVP_MD_CTX*>(ctx);
}

}  // namespace

Sha256Digest sha256(std::string_view bytes) {
  Sha256Digest digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, sha256_algorithm(), nullptr) !=
          1 ||
      length != digest.size()) {
    openssl_broken("EVP_Digest");
  }
  return digest;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(bytes.size() * 2);
  for (const unsigned char byte : bytes) {
    hex.push_back(kHex[byte >> 4]);
    hex.push_back(kHex[byte & 0x0F]);
  }
  return hex;
}

std::string to_hex(const Sha256Digest& digest) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  const auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string bytes;
  bytes.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    const int high = digit(hex[i]);
    const int low = digit(hex[i + 1]);
    if (high < 0 || low < 0) return std::nullopt;
    bytes += static_cast<char>((high << 4) | low);
  }
  return bytes;
}

std::optional<Sha256Digest> digest_from_hex(std::string_view hex) {
  const auto bytes = from_hex(hex);
  if (!bytes || bytes->size() != Sha256Digest{}.size()) return std::nullopt;
  Sha256Digest digest{};
  std::copy(bytes->begin(), bytes->end(), digest.begin());
  return digest;
}

std::string sha256_hex(std::string_view bytes) {
  return to_hex(sha256(bytes));
}

Sha256Hasher::Sha256Hasher() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) openssl_broken("EVP_MD_CTX_new");
  if (EVP_DigestInit_ex(context(ctx_), sha256_algorithm(), nullptr) != 1) {
    openssl_broken("EVP_DigestInit_ex");
  }
}

Sha256Hasher::~Sha256Hasher() {
  EVP_MD_CTX_free(context(ctx_));
}

void Sha256Hasher::update(std::string_view bytes) {
  if (EVP_DigestUpdate(context(ctx_), bytes.data(), bytes.size()) != 1) {
    openssl_broken("EVP_DigestUpdate");
  }
}

// Starts over afterwards, so one hasher can digest several inputs in turn.
Sha256Digest Sha256Hasher::finish() {
  Sha256Digest digest{};
  unsigned int length = 0;
  if (EVP_DigestFinal_ex(context(ctx_), digest.data(), &length) != 1 || length != digest.size()) {
    openssl_broken("EVP_DigestFinal_ex");
  }
  if (EVP_DigestInit_ex(context(ctx_), sha256_algorithm(), nullptr) != 1) {
    openssl_broken("EVP_DigestInit_ex");
  }
  return digest;
}

}  // namespace driftwatch
