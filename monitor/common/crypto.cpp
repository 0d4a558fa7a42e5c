#include "common/crypto.hpp"

#include <cstdio>
#include <cstdlib>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/sha256.hpp"

namespace driftwatch {
namespace {

constexpr size_t kEd25519KeyBytes = 32;
constexpr size_t kEd25519SignatureBytes = 64;
// A PEM Ed25519 key is about 120 bytes; anything far larger is not one, and
// OpenSSL's PEM reader is not handed megabytes of input to scan.
constexpr size_t kMaxPemBytes = 16 * 1024;

// OpenSSL fails on a well-formed key only when it is broken (no default
// provider, out of memory): a broken invariant no caller can recover from.
[[noreturn]] void openssl_broken(const char* step) {
  std::fprintf(stderr,
               "driftwatch: OpenSSL Ed25519 failed in %s; is the default provider loaded?\n", step);
  std::abort();
}

EVP_PKEY* pkey(const std::shared_ptr<void>& key) {
  return static_cast<EVP_PKEY*>(key.get());
}

std::shared_ptr<void> own(EVP_PKEY* key) {
  return std::shared_ptr<void>(key, [](void* k) { EVP_PKEY_free(static_cast<EVP_PKEY*>(k)); });
}

using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

// OpenSSL's PEM reader skips text before the BEGIN line and ignores what
// follows the END line, so a trust entry holding two keys would silently
// mean its first one. A key is exactly one block of `label`, with nothing
// but whitespace around it.
Result<void> single_pem_block(std::string_view pem, std::string_view label) {
  const std::string begin = "-----BEGIN " + std::string(label) + "-----";
  const std::string end = "-----END " + std::string(label) + "-----";
  // Without a block of this label at all, OpenSSL's own refusal says best
  // what was expected (and an encrypted key is told apart there).
  if (pem.find(begin) == std::string_view::npos) return {};
  const size_t first = pem.find_first_not_of(" \t\r\n");
  const size_t last = pem.find_last_not_of(" \t\r\n");
  const std::string_view body = pem.substr(first, last - first + 1);
  if (!body.starts_with(begin))
    return fail("the PEM text does not start with \"", begin, "\" (text before it is refused)");
  if (!body.ends_with(end))
    return fail("the PEM text does not end with \"", end, "\" (text after it is refused)");
  // Between the two lines only the base64 body: no second block, and no
  // END line followed by more text that happens to end like a block.
  if (body.find("-----", begin.size()) != body.size() - end.size())
    return fail("the PEM text holds more than one block; give exactly one key");
  return {};
}

BioPtr memory_bio(std::string_view text) {
  BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
  if (bio == nullptr) openssl_broken("BIO_new_mem_buf");
  return BioPtr(bio, &BIO_free);
}

BioPtr empty_bio() {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) openssl_broken("BIO_new");
  return BioPtr(bio, &BIO_free);
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long length = BIO_get_mem_data(bio, &data);
  if (length < 0 || (length > 0 && data == nullptr)) openssl_broken("BIO_get_mem_data");
  return std::string(data, static_cast<size_t>(length));
}

// Never prompt on a terminal for the passphrase of an encrypted PEM key: the
// daemon has no terminal, and `driftwatch sign` takes unencrypted keys only.
int no_passphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*userdata*/) {
  return -1;
}

bool is_ed25519(EVP_PKEY* key) {
  return EVP_PKEY_get_id(key) == EVP_PKEY_ED25519;
}

// ---------------------------------------------------------------- base64

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int sextet(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

std::string describe_char(char c) {
  const auto byte = static_cast<unsigned char>(c);
  if (byte >= 0x21 && byte < 0x7F) return std::string("'") + c + "'";
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[byte >> 4] + kHex[byte & 0x0F];
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t n = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8) |
                       uint32_t{static_cast<unsigned char>(bytes[i + 2])};
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  const size_t rest = bytes.size() - i;
  if (rest == 1) {
    const uint32_t n = uint32_t{static_cast<unsigned char>(bytes[i])} << 16;
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.append("==");
  } else if (rest == 2) {
    const uint32_t n = (uint32_t{static_cast<unsigned char>(bytes[i])} << 16) |
                       (uint32_t{static_cast<unsigned char>(bytes[i + 1])} << 8);
    out.push_back(kAlphabet[(n >> 18) & 63]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

// Strict, so that one byte string has exactly one accepted encoding: length a
// multiple of 4, '=' only as the last one or two characters, and the unused
// bits before the padding zero (as Go's base64.StdEncoding.Strict).
Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) {
    return fail("invalid base64: length ", std::to_string(text.size()),
                " is not a multiple of 4 (padding is required)");
  }
  size_t padding = 0;
  if (!text.empty() && text.back() == '=') padding = text[text.size() - 2] == '=' ? 2 : 1;
  const size_t data_chars = text.size() - padding;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  uint32_t accumulator = 0;
  int bits = 0;
  for (size_t i = 0; i < data_chars; ++i) {
    const int value = sextet(text[i]);
    if (value < 0 && text[i] == '=') {
      return fail("invalid base64: padding '=' at offset ", std::to_string(i),
                  " (padding may only be the last one or two characters)");
    }
    if (value < 0) {
      return fail("invalid base64: ", describe_char(text[i]), " at offset ", std::to_string(i),
                  " is not in the standard alphabet");
    }
    accumulator = (accumulator << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((accumulator >> bits) & 0xFF));
    }
  }
  if (bits > 0 && (accumulator & ((1u << bits) - 1)) != 0) {
    return fail("invalid base64: non-zero bits before the padding (not a canonical encoding)");
  }
  return out;
}

// ---------------------------------------------------------------- public key

Result<Ed25519PublicKey> Ed25519PublicKey::from_pem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return fail("not an Ed25519 public key: ", std::to_string(pem.size()),
                " bytes is far larger than any PEM public key");
  }
  if (auto single = single_pem_block(pem, "PUBLIC KEY"); !single)
    return wrap(single.error(), "not an Ed25519 public key: ");
  auto bio = memory_bio(pem);
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio.get(), nullptr, &no_passphrase, nullptr);
  if (key == nullptr) {
    return fail(
        "not a PEM public key (expected a \"-----BEGIN PUBLIC KEY-----\" "
        "SubjectPublicKeyInfo block)");
  }
  Ed25519PublicKey result;
  result.key_ = own(key);
  if (!is_ed25519(key)) {
    const char* type = EVP_PKEY_get0_type_name(key);
    return fail("the PEM public key is a ", type ? type : "non-Ed25519", " key, not Ed25519");
  }
  return result;
}

Result<Ed25519PublicKey> Ed25519PublicKey::from_raw(std::string_view raw32) {
  if (raw32.size() != kEd25519KeyBytes) {
    return fail("an Ed25519 public key is 32 bytes, got ", std::to_string(raw32.size()));
  }
  EVP_PKEY* key = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr,
                                              reinterpret_cast<const unsigned char*>(raw32.data()),
                                              raw32.size());
  if (key == nullptr) return fail("OpenSSL refused the 32 raw Ed25519 public key bytes");
  Ed25519PublicKey result;
  result.key_ = own(key);
  return result;
}

std::string Ed25519PublicKey::pem() const {
  if (!key_) return {};
  auto bio = empty_bio();
  if (PEM_write_bio_PUBKEY(bio.get(), pkey(key_)) != 1) openssl_broken("PEM_write_bio_PUBKEY");
  return bio_contents(bio.get());
}

std::string Ed25519PublicKey::der_spki() const {
  if (!key_) return {};
  unsigned char* der = nullptr;
  const int length = i2d_PUBKEY(pkey(key_), &der);
  if (length <= 0 || der == nullptr) openssl_broken("i2d_PUBKEY");
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(length));
  OPENSSL_free(der);
  return out;
}

std::string Ed25519PublicKey::raw() const {
  if (!key_) return {};
  std::string out(kEd25519KeyBytes, '\0');
  size_t length = out.size();
  if (EVP_PKEY_get_raw_public_key(pkey(key_), reinterpret_cast<unsigned char*>(out.data()),
                                  &length) != 1 ||
      length != kEd25519KeyBytes) {
    openssl_broken("EVP_PKEY_get_raw_public_key");
  }
  return out;
}

std::string Ed25519PublicKey::keyid() const {
  if (!key_) return {};
  return sha256_hex(der_spki());
}

bool Ed25519PublicKey::verify(std::string_view message, std::string_view signature) const {
  if (!key_ || signature.size() != kEd25519SignatureBytes) return false;
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx) openssl_broken("EVP_MD_CTX_new");
  // Ed25519 is one-shot: no digest is named, the whole message goes in once.
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, pkey(key_)) != 1) {
    openssl_broken("EVP_DigestVerifyInit");
  }
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

// ---------------------------------------------------------------- private key

Result<Ed25519PrivateKey> Ed25519PrivateKey::generate() {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) return fail("OpenSSL could not generate an Ed25519 key");
  Ed25519PrivateKey result;
  result.key_ = own(key);
  return result;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_pem(std::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return fail("not an Ed25519 private key: ", std::to_string(pem.size()),
                " bytes is far larger than any PEM private key");
  }
  if (auto single = single_pem_block(pem, "PRIVATE KEY"); !single)
    return wrap(single.error(), "not an Ed25519 private key: ");
  auto bio = memory_bio(pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio.get(), nullptr, &no_passphrase, nullptr);
  if (key == nullptr) {
    return fail(
        "not an unencrypted PEM private key (expected a \"-----BEGIN PRIVATE KEY-----\" "
        "PKCS#8 block)");
  }
  Ed25519PrivateKey result;
  result.key_ = own(key);
  if (!is_ed25519(key)) {
    const char* type = EVP_PKEY_get0_type_name(key);
    return fail("the PEM private key is a ", type ? type : "non-Ed25519", " key, not Ed25519");
  }
  return result;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_raw(std::string_view seed32) {
  if (seed32.size() != kEd25519KeyBytes) {
    return fail("an Ed25519 private key seed is 32 bytes, got ", std::to_string(seed32.size()));
  }
  EVP_PKEY* key = EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed32.data()),
      seed32.size());
  if (key == nullptr) return fail("OpenSSL refused the 32-byte Ed25519 private key seed");
  Ed25519PrivateKey result;
  result.key_ = own(key);
  return result;
}

std::string Ed25519PrivateKey::pem() const {
  if (!key_) return {};
  auto bio = empty_bio();
  if (PEM_write_bio_PKCS8PrivateKey(bio.get(), pkey(key_), nullptr, nullptr, 0, nullptr, nullptr) !=
      1) {
    openssl_broken("PEM_write_bio_PKCS8PrivateKey");
  }
  return bio_contents(bio.get());
}

Ed25519PublicKey Ed25519PrivateKey::public_key() const {
  Ed25519PublicKey result;
  if (!key_) return result;
  // Through the raw bytes, so the public key object holds no private part.
  std::string raw(kEd25519KeyBytes, '\0');
  size_t length = raw.size();
  if (EVP_PKEY_get_raw_public_key(pkey(key_), reinterpret_cast<unsigned char*>(raw.data()),
                                  &length) != 1 ||
      length != kEd25519KeyBytes) {
    openssl_broken("EVP_PKEY_get_raw_public_key");
  }
  auto from_raw = Ed25519PublicKey::from_raw(raw);
  if (!from_raw) openssl_broken("EVP_PKEY_new_raw_public_key");
  return *from_raw;
}

std::string Ed25519PrivateKey::sign(std::string_view message) const {
  if (!key_) openssl_broken("sign with an empty Ed25519PrivateKey");
  MdCtxPtr ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx) openssl_broken("EVP_MD_CTX_new");
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, pkey(key_)) != 1) {
    openssl_broken("EVP_DigestSignInit");
  }
  std::string signature(kEd25519SignatureBytes, '\0');
  size_t length = signature.size();
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(signature.data()), &length,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1 ||
      length != kEd25519SignatureBytes) {
    openssl_broken("EVP_DigestSign");
  }
  return signature;
}

}  // namespace driftwatch
