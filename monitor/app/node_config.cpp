#include "app/node_config.hpp"
#include "common/posix.hpp"

#include "common/file_io.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <functional>
#include <map>
#include <system_error>

#include "api/http_server.hpp"
#include "common/canonical_json.hpp"

namespace driftwatch::app {
namespace {

using nlohmann::json;

// parse_json refuses more than 4 MiB; reading one byte past that lets it
// say so instead of us parsing a cut-off file.
constexpr size_t kMaxConfigRead = (size_t{4} << 20) + 1;
// Ten years: any larger interval is a typo, and seconds this large still fit
// a std::chrono::nanoseconds without overflow.
constexpr int64_t kMaxSeconds = int64_t{10} * 365 * 24 * 3600;
constexpr size_t kMaxNodeName = 64;

bool is_valid_node_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNodeName) return false;
  for (const char c : name) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> host_name() {
  char buffer[256] = {};
  if (::gethostname(buffer, sizeof buffer - 1) != 0) {
    return fail("cannot read the host name for the default node_name: ", describe_errno(errno),
                "; set node_name in the config");
  }
  std::string name(buffer);
  if (!is_valid_node_name(name)) {
    return fail("the host name '", name,
                "' is not a valid node_name (1 to 64 of A-Z a-z 0-9 . _ -)",
                "; set node_name in the config");
  }
  return name;
}

// Reads one config document, naming every problem by its dotted key path.
class ConfigReader {
 public:
  explicit ConfigReader(std::string_view what) : what_(what) {}

  Result<NodeConfig> read(const json& document) {
    if (!document.is_object()) {
      return error("the document must be a JSON object, not ", type_of(document));
    }
    NodeConfig config;
    using Field = std::function<Result<void>(const json&)>;
    const std::map<std::string, Field, std::less<>> fields{
        {"node_name",
         [&](const json& v) -> Result<void> {
           DW_TRY(name, read_string("node_name", v));
           if (!is_valid_node_name(name)) {
             return error("key 'node_name' must be 1 to 64 of A-Z a-z 0-9 . _ -, not '", name, "'");
           }
           config.node_name = std::move(name);
           return {};
         }},
        {"listen",
         [&](const json& v) -> Result<void> {
           DW_TRY(listen, read_string("listen", v));
           if (auto parsed = api::parse_listen_address(listen); !parsed) {
             return error("key 'listen': ", parsed.error().message);
           }
           config.listen = std::move(listen);
           return {};
         }},
        {"state_dir",
         [&](const json& v) -> Result<void> {
           DW_TRY(dir, read_path("state_dir", v));
           if (!dir.is_absolute()) {
             return error("key 'state_dir' must be an absolute path, not '", dir.string(), "'");
           }
           config.state_dir = std::move(dir);
           return {};
         }},
        {"trust",
         [&](const json& v) -> Result<void> {
           DW_TRY(trust, read_path("trust", v));
           config.trust = std::move(trust);
           return {};
         }},
        {"policy",
         [&](const json& v) -> Result<void> {
           if (v.is_null()) {
             config.policy.reset();
             return {};
           }
           if (!v.is_string()) {
             return error("key 'policy' must be null (the embedded default) or a path string, not ",
                          type_of(v));
           }
           DW_TRY(policy, read_path("policy", v));
           config.policy = std::move(policy);
           return {};
         }},
        {"launch_journals",
         [&](const json& v) -> Result<void> {
           DW_TRY(journals, read_path_list("launch_journals", v));
           config.launch_journals = std::move(journals);
           return {};
         }},
        {"discovery", [&](const json& v) { return read_discovery(v, config); }},
        {"sweep_interval_seconds",
         [&](const json& v) {
           return read_seconds("sweep_interval_seconds", v, 1, config.sweep_interval_seconds);
         }},
        {"unattested_grace_seconds",
         [&](const json& v) {
           return read_seconds("unattested_grace_seconds", v, 0, config.unattested_grace_seconds);
         }},
        {"event_max_age_seconds",
         [&](const json& v) {
           return read_seconds("event_max_age_seconds", v, 1, config.event_max_age_seconds);
         }},
        {"checkpoint_interval_seconds",
         [&](const json& v) {
           return read_seconds("checkpoint_interval_seconds", v, 1,
                               config.checkpoint_interval_seconds);
         }},
        {"probes",
         [&](const json& v) -> Result<void> {
           if (!v.is_boolean()) return wrong_type("probes", "a boolean", v);
           config.probes = v.get<bool>();
           return {};
         }},
        {"syscall_probes",
         [&](const json& v) -> Result<void> {
           if (!v.is_boolean()) return wrong_type("syscall_probes", "a boolean", v);
           config.syscall_probes = v.get<bool>();
           return {};
         }},
    };
    for (const auto& [key, value] : document.items()) {
      const auto field = fields.find(key);
      if (field == fields.end()) return unknown_key(key);
      if (auto done = field->second(value); !done) return std::unexpected(done.error());
    }
    if (config.node_name.empty()) {
      auto name = host_name();
      if (!name) return error(name.error().message);
      config.node_name = std::move(*name);
    }
    return config;
  }

 private:
  Result<void> read_discovery(const json& value, NodeConfig& config) {
    if (!value.is_object()) return wrong_type("discovery", "an object", value);
    for (const auto& [key, item] : value.items()) {
      const std::string name = "discovery." + key;
      if (key == "runc_roots") {
        DW_TRY(roots, read_path_list(name, item));
        config.runc_roots = std::move(roots);
      } else if (key == "crun_roots") {
        DW_TRY(roots, read_path_list(name, item));
        config.crun_roots = std::move(roots);
      } else if (key == "containerd_roots") {
        DW_TRY(roots, read_path_list(name, item));
        config.containerd_roots = std::move(roots);
      } else if (key == "podman_storage") {
        DW_TRY(roots, read_path_list(name, item));
        config.podman_storage = std::move(roots);
      } else if (key == "cgroup_globs") {
        DW_TRY(globs, read_string_list(name, item));
        config.cgroup_globs = std::move(globs);
      } else {
        return unknown_key(name);
      }
    }
    return {};
  }

  Result<std::string> read_string(const std::string& key, const json& value) {
    if (!value.is_string()) return wrong_type(key, "a string", value);
    std::string text = value.get<std::string>();
    // "\u0000" is valid JSON but would silently cut a path short in a syscall.
    if (text.find('\0') != std::string::npos) {
      return error("key '", key, "' must not contain a NUL character");
    }
    return text;
  }

  Result<std::filesystem::path> read_path(const std::string& key, const json& value) {
    DW_TRY(text, read_string(key, value));
    if (text.empty()) return error("key '", key, "' must be a path, not an empty string");
    return std::filesystem::path(std::move(text));
  }

  Result<std::vector<std::string>> read_string_list(const std::string& key, const json& value) {
    if (!value.is_array()) return wrong_type(key, "an array of strings", value);
    std::vector<std::string> list;
    for (size_t i = 0; i < value.size(); ++i) {
      DW_TRY(item, read_string(key + "[" + std::to_string(i) + "]", value[i]));
      if (item.empty()) {
        return error("key '", key, "[", std::to_string(i), "]' must not be an empty string");
      }
      list.push_back(std::move(item));
    }
    return list;
  }

  Result<std::vector<std::filesystem::path>> read_path_list(const std::string& key,
                                                            const json& value) {
    if (!value.is_array()) return wrong_type(key, "an array of path strings", value);
    std::vector<std::filesystem::path> list;
    for (size_t i = 0; i < value.size(); ++i) {
      DW_TRY(item, read_path(key + "[" + std::to_string(i) + "]", value[i]));
      list.push_back(std::move(item));
    }
    return list;
  }

  Result<void> read_seconds(const std::string& key, const json& value, int64_t minimum,
                            int64_t& out) {
    // nlohmann reads 10.0 as a float and -1 as a signed integer; only whole
    // numbers are seconds here.
    if (!value.is_number_integer()) return wrong_type(key, "an integer number of seconds", value);
    const bool too_big = value.is_number_unsigned()
                             ? value.get<uint64_t>() > static_cast<uint64_t>(kMaxSeconds)
                             : value.get<int64_t>() > kMaxSeconds;
    if (too_big) {
      return error("key '", key, "' must be at most ", std::to_string(kMaxSeconds),
                   " seconds (ten years), not ", value.dump());
    }
    const int64_t number = value.get<int64_t>();
    if (number < minimum) {
      return error("key '", key, "' must be at least ", std::to_string(minimum), ", not ",
                   std::to_string(number));
    }
    out = number;
    return {};
  }

  static std::string type_of(const json& value) {
    if (value.is_number_integer()) return "an integer";
    if (value.is_number_float()) return "a fractional number";
    if (value.is_string()) return "a string";
    if (value.is_boolean()) return "a boolean";
    if (value.is_null()) return "null";
    if (value.is_array()) return "an array";
    return "an object";
  }

  std::unexpected<Error> wrong_type(const std::string& key, std::string_view expected,
                                    const json& value) {
    return error("key '", key, "' must be ", expected, ", not ", type_of(value));
  }

  std::unexpected<Error> unknown_key(const std::string& key) {
    return error("unknown key '", key, "' (see DESIGN.md \"Node configuration\" for the keys)");
  }

  template <class... Parts>
  std::unexpected<Error> error(Parts&&... parts) {
    return fail(what_, ": ", std::forward<Parts>(parts)...);
  }

  std::string what_;
};

json path_array(const std::vector<std::filesystem::path>& paths) {
  json array = json::array();
  for (const auto& path : paths) array.push_back(path.string());
  return array;
}

}  // namespace

Result<NodeConfig> parse_node_config(std::string_view text, std::string_view what) {
  DW_TRY(document, parse_json(text, what));
  return ConfigReader(what).read(document);
}

Result<NodeConfig> load_node_config(const std::optional<std::filesystem::path>& path) {
  if (!path) {
    NodeConfig config;
    DW_TRY(name, host_name());
    config.node_name = std::move(name);
    return config;
  }
  const std::string what = "config " + path->string();
  // Outside input: never followed through a link, never waited on (a FIFO),
  // refused unless a regular file.
  DW_TRY(text, read_regular_file(*path, kMaxConfigRead, "config"));
  return parse_node_config(text, what);
}

nlohmann::json to_json(const NodeConfig& config) {
  return json{
      {"node_name", config.node_name},
      {"listen", config.listen},
      {"state_dir", config.state_dir.string()},
      {"trust", config.trust.string()},
      {"policy", config.policy ? json(config.policy->string()) : json(nullptr)},
      {"launch_journals", path_array(config.launch_journals)},
      {"discovery",
       {{"runc_roots", path_array(config.runc_roots)},
        {"crun_roots", path_array(config.crun_roots)},
        {"containerd_roots", path_array(config.containerd_roots)},
        {"podman_storage", path_array(config.podman_storage)},
        {"cgroup_globs", config.cgroup_globs}}},
      {"sweep_interval_seconds", config.sweep_interval_seconds},
      {"unattested_grace_seconds", config.unattested_grace_seconds},
      {"event_max_age_seconds", config.event_max_age_seconds},
      {"checkpoint_interval_seconds", config.checkpoint_interval_seconds},
      {"probes", config.probes},
      {"syscall_probes", config.syscall_probes},
  };
}

}  // namespace driftwatch::app
