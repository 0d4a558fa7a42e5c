#include "support/http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <optional>
#include <stdexcept>

namespace driftwatch::testing {
namespace {

constexpr int kTimeoutSeconds = 30;

// The Content-Length header's value, if the headers have one.
std::optional<size_t> content_length(const std::string& headers) {
  std::string lower = headers;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  const auto at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) return std::nullopt;
  try {
    return std::stoul(lower.substr(at + 17));
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace

HttpReply http_request(uint16_t port, const std::string& method, const std::string& path,
                       const std::string& body) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // Every send and receive has a deadline, and running into it is an error,
  // never a short answer.
  timeval timeout{kTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    throw std::runtime_error("connect to port " + std::to_string(port) + ": " +
                             std::strerror(errno));
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                        "Connection: close\r\nContent-Type: application/json\r\n" +
                        "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      close(fd);
      throw std::runtime_error(method + " " + path + " to port " + std::to_string(port) +
                               ": the server read nothing for " + std::to_string(kTimeoutSeconds) +
                               " s");
    }
    if (n <= 0) break;  // the server may answer (413) before reading it all
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buffer[65536];
  for (;;) {
    ssize_t n = recv(fd, buffer, sizeof buffer, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      close(fd);
      throw std::runtime_error(method + " " + path + " to port " + std::to_string(port) +
                               ": no complete answer within " + std::to_string(kTimeoutSeconds) +
                               " s; got " + std::to_string(response.size()) + " bytes: '" +
                               response.substr(0, 200) + "'");
    }
    if (n <= 0) break;  // the server closed (Connection: close): the answer is complete
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12)
    throw std::runtime_error("not an HTTP answer from port " + std::to_string(port) + ": '" +
                             response.substr(0, 80) + "'");
  HttpReply reply;
  reply.status = std::stoi(response.substr(9, 3));
  auto header_end = response.find("\r\n\r\n");
  if (header_end != std::string::npos) {
    std::string headers = response.substr(0, header_end);
    reply.body = response.substr(header_end + 4);
    for (size_t line = headers.find("\r\n"); line != std::string::npos;) {
      const size_t next = headers.find("\r\n", line + 2);
      const std::string field = headers.substr(line + 2, next - line - 2);
      const size_t colon = field.find(':');
      if (colon != std::string::npos) {
        std::string name = field.substr(0, colon);
        std::transform(name.begin(), name.end(), name.begin(),
                       [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
        const size_t value = field.find_first_not_of(" \t", colon + 1);
        reply.headers[name] = value == std::string::npos ? "" : field.substr(value);
      }
      line = next;
    }
    // Chunked answers: join the chunks.
    if (headers.find("chunked") != std::string::npos) {
      std::string joined;
      size_t pos = 0;
      while (pos < reply.body.size()) {
        size_t line_end = reply.body.find("\r\n", pos);
        if (line_end == std::string::npos) break;
        size_t size = std::stoul(reply.body.substr(pos, line_end - pos), nullptr, 16);
        if (size == 0) break;
        joined += reply.body.substr(line_end + 2, size);
        pos = line_end + 2 + size + 2;
      }
      reply.body = joined;
    } else if (auto length = content_length(headers); length && reply.body.size() < *length) {
      throw std::runtime_error("a cut-off answer from port " + std::to_string(port) + " to " +
                               method + " " + path + ": Content-Length " + std::to_string(*length) +
                               ", " + std::to_string(reply.body.size()) + " bytes of body");
    }
  }
  return reply;
}

}  // namespace driftwatch::testing
