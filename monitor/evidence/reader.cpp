#include "evidence/reader.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <memory>
#include <utility>

#include "common/file_io.hpp"

namespace driftwatch::evidence {

Reader directory_reader(std::filesystem::path dir) {
  return [dir = std::move(dir)](std::string_view path,
                                std::size_t max_bytes) -> Result<std::optional<std::string>> {
    DW_TRY(text, read_regular_file_beneath(dir, path, max_bytes, "evidence file"));
    if (!text) {
      struct stat st {};
      if (::stat(dir.c_str(), &st) != 0 && errno == ENOENT)
        return fail("evidence log directory ", dir.string(), " does not exist");
    }
    return text;
  };
}

Reader url_reader(HttpFetcher fetcher) {
  // std::function copies its target; the one connection is shared.
  auto shared = std::make_shared<HttpFetcher>(std::move(fetcher));
  return [shared](std::string_view path, std::size_t max_bytes) {
    return shared->get(path, max_bytes);
  };
}

}  // namespace driftwatch::evidence
