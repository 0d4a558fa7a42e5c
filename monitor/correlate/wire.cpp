#include "correlate/wire.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <exception>
#include <initializer_list>
#include <limits>
#include <set>
#include <utility>

#include "common/canonical_json.hpp"
#include "common/crypto.hpp"
#include "common/posix.hpp"
#include "common/text.hpp"
#include "observe/cgroupfs.hpp"
#include "observe/proc_reader.hpp"
#include "sandbox/engines.hpp"

namespace driftwatch::correlate::wire {
namespace {

using nlohmann::json;

constexpr std::string_view kRuntimes[] = {"runc", "crun", "process", "cgroup"};
// sandbox::kEngines, as the one_of() list.
constexpr std::string_view kEngines[] = {"runc",       "crun",   "podman",
                                         "containerd", "cgroup", "process"};
static_assert(std::size(kEngines) == std::size(sandbox::kEngines));
// Names of one sandbox besides its id.
constexpr std::size_t kMaxNames = 64;
constexpr std::string_view kMemberships[] = {"cgroup", "descendants"};
constexpr std::string_view kOps[] = {"sweep", "sample_one"};
constexpr std::string_view kHostSources[] = {"pid1", "monitor"};
constexpr std::string_view kPeerOps[] = {"links", "root_view"};
constexpr std::string_view kPathStates[] = {"absent", "masked", "read_only", "writable", "unknown"};
// /proc/PID/limits has 16 rows today; room for the kernel to add some.
constexpr std::size_t kMaxRlimits = 64;
// Base64 of kMaxTextBytes bytes.
constexpr std::size_t kMaxBase64Chars = (kMaxTextBytes + 2) / 3 * 4;

// ================================================================ writing

// Text as the header describes: a string when it is UTF-8, else base64.
json text_json(std::string_view text) {
  if (is_valid_utf8(text)) return json(std::string(text));
  return json::object({{"base64", base64_encode(text)}});
}

json optional_text_json(const std::optional<std::string>& text) {
  return text ? text_json(*text) : json(nullptr);
}

template <class Texts>
json texts_json(const Texts& texts) {
  json out = json::array();
  for (const auto& text : texts) out.push_back(text_json(text));
  return out;
}

template <class T>
json optional_json(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

json inodes_json(const std::map<std::string, uint64_t>& inodes) {
  json out = json::object();
  for (const auto& [name, inode] : inodes) out[name] = inode;
  return out;
}

json scope_json(const projection::ObservationScope& scope) {
  return json::object({{"masked_candidates", texts_json(scope.masked_candidates)},
                       {"declared_masked", texts_json(scope.declared_masked)},
                       {"readonly_candidates", texts_json(scope.readonly_candidates)},
                       {"declared_readonly", texts_json(scope.declared_readonly)},
                       {"rlimits", scope.rlimits ? texts_json(*scope.rlimits) : json(nullptr)}});
}

json ref_json(const sandbox::SandboxRef& ref) {
  json v1 = json::array();
  for (const auto& [controller, path] : ref.cgroups.v1)
    v1.push_back(json::array({text_json(controller), text_json(path)}));
  return json::object(
      {{"sandbox_id", text_json(ref.sandbox_id)},
       {"runtime", ref.runtime},
       {"engine", ref.engine},
       {"names", texts_json(ref.names)},
       {"first_process", json::object({{"pid", ref.first_process.pid},
                                       {"start_time_ticks", ref.first_process.start_time_ticks}})},
       {"membership", ref.membership == sandbox::Membership::cgroup ? "cgroup" : "descendants"},
       {"cgroups",
        json::object({{"unified", optional_text_json(ref.cgroups.unified)}, {"v1", v1}})},
       {"bundle", ref.bundle ? text_json(ref.bundle->string()) : json(nullptr)}});
}

json status_json(const observe::ProcStatus& s) {
  return json::object({{"name", text_json(s.name)},
                       {"tgid", s.tgid},
                       {"ppid", s.ppid},
                       {"uid", json::array({s.uid[0], s.uid[1], s.uid[2], s.uid[3]})},
                       {"gid", json::array({s.gid[0], s.gid[1], s.gid[2], s.gid[3]})},
                       {"groups", s.groups},
                       {"nspid", s.nspid},
                       {"cap_inheritable", s.cap_inheritable},
                       {"cap_permitted", s.cap_permitted},
                       {"cap_effective", s.cap_effective},
                       {"cap_bounding", s.cap_bounding},
                       {"cap_ambient", s.cap_ambient},
                       {"no_new_privs", s.no_new_privs},
                       {"seccomp", s.seccomp}});
}

json member_json(const projection::MemberObservation& m) {
  json rlimits = json::array();
  for (const auto& r : m.rlimits) {
    rlimits.push_back(json::object(
        {{"name", r.name}, {"soft", optional_json(r.soft)}, {"hard", optional_json(r.hard)}}));
  }
  return json::object(
      {{"pid", m.pid},
       {"start_time_ticks", m.start_time_ticks},
       {"status", status_json(m.status)},
       {"namespaces", inodes_json(m.namespaces)},
       {"rlimits", rlimits},
       {"cgroup_limits", json::object({{"memory_max", optional_json(m.cgroup_limits.memory_max)},
                                       {"pids_max", optional_json(m.cgroup_limits.pids_max)},
                                       {"cpu_max", optional_json(m.cgroup_limits.cpu_max)}})},
       {"lsm_label", optional_text_json(m.lsm_label)},
       {"argv", texts_json(m.argv)},
       {"exe", text_json(m.exe)},
       {"nested_user_namespace", m.nested_user_namespace},
       {"exiting", m.exiting}});
}

json observation_json(const projection::Observation& obs) {
  json members = json::array();
  for (const auto& m : obs.members) members.push_back(member_json(m));
  json views = json::array();
  for (const auto& v : obs.mount_views) {
    views.push_back(json::object({{"mount_namespace", v.mount_namespace},
                                  {"seen_through", v.seen_through},
                                  {"root_readonly", v.root_readonly},
                                  {"masked", texts_json(v.masked)},
                                  {"readonly", texts_json(v.readonly)}}));
  }
  return json::object({{"sandbox_id", text_json(obs.sandbox_id)},
                       {"runtime", obs.runtime},
                       {"members", members},
                       {"mount_views", views},
                       {"host_namespaces", inodes_json(obs.host_namespaces)},
                       {"vanished", obs.vanished}});
}

// ================================================================ reading
//
// One Reader per document keeps the first error; after it, every read is a
// no-op returning a default, so the code below reads like a schema, without
// a check after each field. Paths are rendered only when something fails.

// Where a value is in the document: "response: sample 3" then
// ".observation.members[2]" and so on.
class Path {
 public:
  explicit Path(std::string_view label) : label_(label) {}
  Path key(std::string_view name) const { return Path(this, name, 0, false); }
  Path index(std::size_t i) const { return Path(this, {}, i, true); }

  std::string str() const {
    if (!parent_) return std::string(label_);
    std::string out = parent_->str();
    if (is_index_) return out + "[" + std::to_string(index_) + "]";
    if (out.empty()) return std::string(label_);
    // The first key after the label reads "label: key", later ones "a.b".
    out += parent_->parent_ ? "." : ": ";
    out += label_;
    return out;
  }

 private:
  Path(const Path* parent, std::string_view label, std::size_t index, bool is_index)
      : parent_(parent), label_(label), index_(index), is_index_(is_index) {}
  const Path* parent_ = nullptr;
  std::string_view label_;
  std::size_t index_ = 0;
  bool is_index_ = false;
};

class Reader {
 public:
  bool failed() const { return error_.has_value(); }
  void fail(const Path& at, std::string_view what) {
    if (!error_) error_ = at.str() + ": " + std::string(what);
  }
  const std::string& error() const { return *error_; }

 private:
  std::optional<std::string> error_;
};

/// A value and where it is.
struct Field {
  const json& value;
  Path path;
};

const json& null_json() {
  static const json kNull;
  return kNull;
}

// The members of one JSON object, read by name; done() reports a member
// nobody read (an unknown field).
class Object {
 public:
  Object(Reader& r, const Field& field) : r_(r), path_(field.path) {
    if (r_.failed()) return;
    if (!field.value.is_object()) {
      r_.fail(path_, "not an object");
      return;
    }
    object_ = &field.value.get_ref<const json::object_t&>();
  }
  Object(const Object&) = delete;
  Object& operator=(const Object&) = delete;

  /// The member `name`; missing is an error.
  Field operator[](std::string_view name) {
    if (!object_ || r_.failed()) return {null_json(), path_.key(name)};
    const auto it = object_->find(std::string(name));
    if (it == object_->end()) {
      r_.fail(path_.key(name), "missing");
      return {null_json(), path_.key(name)};
    }
    read_.push_back(name);
    return {it->second, path_.key(it->first)};
  }

  void done() {
    if (!object_ || r_.failed() || object_->size() == read_.size()) return;
    for (const auto& [name, value] : *object_) {
      if (std::find(read_.begin(), read_.end(), name) == read_.end()) {
        r_.fail(path_, "unknown field " + quote(name));
        return;
      }
    }
  }

 private:
  Reader& r_;
  Path path_;
  const json::object_t* object_ = nullptr;
  std::vector<std::string_view> read_;
};

bool boolean(Reader& r, const Field& f) {
  if (r.failed()) return false;
  if (!f.value.is_boolean()) {
    r.fail(f.path, "not a boolean");
    return false;
  }
  return f.value.get<bool>();
}

uint64_t unsigned_integer(Reader& r, const Field& f,
                          uint64_t max = std::numeric_limits<uint64_t>::max()) {
  if (r.failed()) return 0;
  uint64_t value = 0;
  if (f.value.is_number_unsigned()) {
    value = f.value.get<uint64_t>();
  } else if (f.value.is_number_integer() && f.value.get<int64_t>() >= 0) {
    value = static_cast<uint64_t>(f.value.get<int64_t>());
  } else {
    r.fail(f.path, "not an unsigned integer");
    return 0;
  }
  if (value > max) {
    r.fail(f.path, std::to_string(value) + " is above the limit " + std::to_string(max));
    return 0;
  }
  return value;
}

int64_t integer(Reader& r, const Field& f, int64_t min, int64_t max) {
  if (r.failed()) return 0;
  int64_t value = 0;
  if (f.value.is_number_unsigned()) {
    const auto big = f.value.get<uint64_t>();
    if (big > static_cast<uint64_t>(max)) {
      r.fail(f.path, std::to_string(big) + " is not in " + std::to_string(min) + ".." +
                         std::to_string(max));
      return 0;
    }
    value = static_cast<int64_t>(big);
  } else if (f.value.is_number_integer()) {
    value = f.value.get<int64_t>();
  } else {
    r.fail(f.path, "not an integer");
    return 0;
  }
  if (value < min || value > max) {
    r.fail(f.path, std::to_string(value) + " is not in " + std::to_string(min) + ".." +
                       std::to_string(max));
    return 0;
  }
  return value;
}

pid_t pid(Reader& r, const Field& f) {
  return static_cast<pid_t>(integer(r, f, 1, kMaxPid));
}

double seconds(Reader& r, const Field& f) {
  if (r.failed()) return 0;
  if (!f.value.is_number()) {
    r.fail(f.path, "not a number");
    return 0;
  }
  const double value = f.value.get<double>();
  if (!std::isfinite(value) || value < 0 || value > kMaxSampleSeconds) {
    r.fail(f.path, "not a number of seconds in 0.." + std::to_string(int64_t(kMaxSampleSeconds)));
    return 0;
  }
  return value;
}

// A string, or {"base64": ...} for bytes that are not UTF-8.
std::string text(Reader& r, const Field& f, bool non_empty = false) {
  if (r.failed()) return {};
  std::string out;
  if (f.value.is_string()) {
    const auto& s = f.value.get_ref<const std::string&>();
    if (s.size() > kMaxTextBytes) {
      r.fail(f.path, "is " + std::to_string(s.size()) + " bytes, more than the limit of " +
                         std::to_string(kMaxTextBytes));
      return {};
    }
    if (!is_valid_utf8(s)) {
      r.fail(f.path, "a string that is not valid UTF-8 (bytes are sent as {\"base64\": ...})");
      return {};
    }
    out = s;
  } else if (f.value.is_object()) {
    Object o(r, f);
    const Field encoded = o["base64"];
    o.done();
    if (r.failed()) return {};
    if (!encoded.value.is_string()) {
      r.fail(encoded.path, "not a string");
      return {};
    }
    const auto& chars = encoded.value.get_ref<const std::string&>();
    if (chars.size() > kMaxBase64Chars) {
      r.fail(encoded.path, "is " + std::to_string(chars.size()) +
                               " characters, more than the base64 of " +
                               std::to_string(kMaxTextBytes) + " bytes");
      return {};
    }
    auto bytes = base64_decode(chars);
    if (!bytes) {
      r.fail(encoded.path, bytes.error().message);
      return {};
    }
    if (bytes->size() > kMaxTextBytes) {
      r.fail(f.path, "is " + std::to_string(bytes->size()) + " bytes, more than the limit of " +
                         std::to_string(kMaxTextBytes));
      return {};
    }
    if (is_valid_utf8(*bytes)) {
      r.fail(f.path, "valid UTF-8 in base64 form (UTF-8 text is sent as a string)");
      return {};
    }
    out = std::move(*bytes);
  } else {
    r.fail(f.path, "not a string (nor {\"base64\": ...})");
    return {};
  }
  if (out.find('\0') != std::string::npos) {
    r.fail(f.path, "contains a NUL byte");
    return {};
  }
  if (non_empty && out.empty()) {
    r.fail(f.path, "empty");
    return {};
  }
  return out;
}

// The index of the value among `names`.
template <std::size_t N>
std::size_t one_of(Reader& r, const Field& f, const std::string_view (&names)[N]) {
  if (r.failed()) return 0;
  if (!f.value.is_string()) {
    r.fail(f.path, "not a string");
    return 0;
  }
  const auto& value = f.value.get_ref<const std::string&>();
  for (std::size_t i = 0; i < N; ++i)
    if (value == names[i]) return i;
  std::string expected;
  for (std::size_t i = 0; i < N; ++i) expected += (i ? ", " : "") + std::string(names[i]);
  r.fail(f.path, quote(value) + " is not one of " + expected);
  return 0;
}

// null, or what `read` makes of the value.
template <class Read>
auto nullable(Reader& r, const Field& f, Read read) -> std::optional<decltype(read(f))> {
  if (r.failed() || f.value.is_null()) return std::nullopt;
  auto value = read(f);
  if (r.failed()) return std::nullopt;
  return value;
}

// Calls `each` with every element of an array of at most `max` elements.
template <class Each>
void array(Reader& r, const Field& f, std::size_t max, Each each) {
  if (r.failed()) return;
  if (!f.value.is_array()) {
    r.fail(f.path, "not an array");
    return;
  }
  const auto& elements = f.value.get_ref<const json::array_t&>();
  if (elements.size() > max) {
    r.fail(f.path, "has " + std::to_string(elements.size()) + " entries, more than the limit of " +
                       std::to_string(max));
    return;
  }
  for (std::size_t i = 0; i < elements.size() && !r.failed(); ++i)
    each(Field{elements[i], f.path.index(i)});
}

std::vector<std::string> texts(Reader& r, const Field& f, std::size_t max) {
  std::vector<std::string> out;
  array(r, f, max, [&](const Field& e) { out.push_back(text(r, e)); });
  return out;
}

// A set: ascending byte order, each entry once.
std::set<std::string> text_set(Reader& r, const Field& f) {
  std::set<std::string> out;
  array(r, f, kMaxSetEntries, [&](const Field& e) {
    std::string entry = text(r, e);
    if (r.failed()) return;
    if (!out.empty() && !(*out.rbegin() < entry)) {
      r.fail(e.path, "not after " + quote(*out.rbegin()) + " (a set is sorted, each entry once)");
      return;
    }
    out.insert(out.end(), std::move(entry));
  });
  return out;
}

template <class Number, class Read>
std::vector<Number> numbers(Reader& r, const Field& f, std::size_t max, Read read) {
  std::vector<Number> out;
  array(r, f, max, [&](const Field& e) { out.push_back(static_cast<Number>(read(e))); });
  return out;
}

bool is_namespace_kind(std::string_view name) {
  return std::any_of(std::begin(observe::kNamespaceKinds), std::end(observe::kNamespaceKinds),
                     [&](const char* kind) { return name == kind; });
}

// /proc/PID/ns name -> inode.
std::map<std::string, uint64_t> inodes(Reader& r, const Field& f) {
  std::map<std::string, uint64_t> out;
  if (r.failed()) return out;
  if (!f.value.is_object()) {
    r.fail(f.path, "not an object");
    return out;
  }
  for (const auto& [name, value] : f.value.get_ref<const json::object_t&>()) {
    if (!is_namespace_kind(name)) {
      r.fail(f.path, "unknown namespace " + quote(name) +
                         " (expected cgroup, ipc, mnt, net, pid, time, user or uts)");
      return out;
    }
    out[name] = unsigned_integer(r, Field{value, f.path.key(name)});
  }
  return out;
}

std::string sha256_hex(Reader& r, const Field& f) {
  if (r.failed()) return {};
  if (!f.value.is_string()) {
    r.fail(f.path, "not a string");
    return {};
  }
  const auto& value = f.value.get_ref<const std::string&>();
  const bool hex = value.size() == 64 && std::all_of(value.begin(), value.end(), [](char c) {
                     return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
                   });
  if (!hex) {
    r.fail(f.path, quote(value) + " is not a SHA-256 (64 lowercase hex digits)");
    return {};
  }
  return value;
}

void expect_type(Reader& r, const Field& f, std::string_view type) {
  if (r.failed()) return;
  if (!f.value.is_string() || f.value.get_ref<const std::string&>() != type) {
    r.fail(f.path, (f.value.is_string() ? quote(f.value.get_ref<const std::string&>())
                                        : std::string("not a string")) +
                       ", not '" + std::string(type) + "'");
  }
}

// A confinement report: any object, kept as it is.
json opaque_object(Reader& r, const Field& f) {
  if (r.failed()) return json::object();
  if (!f.value.is_object()) {
    r.fail(f.path, "not an object");
    return json::object();
  }
  return f.value;
}

// ---------------------------------------------------------------- structs

projection::ObservationScope read_scope(Reader& r, const Field& f) {
  Object o(r, f);
  projection::ObservationScope scope;
  scope.masked_candidates = text_set(r, o["masked_candidates"]);
  scope.declared_masked = text_set(r, o["declared_masked"]);
  scope.readonly_candidates = text_set(r, o["readonly_candidates"]);
  scope.declared_readonly = text_set(r, o["declared_readonly"]);
  scope.rlimits = nullable(r, o["rlimits"], [&](const Field& e) { return text_set(r, e); });
  o.done();
  return scope;
}

sandbox::SandboxRef read_ref(Reader& r, const Field& f) {
  Object o(r, f);
  sandbox::SandboxRef ref;
  ref.sandbox_id = text(r, o["sandbox_id"], /*non_empty=*/true);
  ref.runtime = std::string(kRuntimes[one_of(r, o["runtime"], kRuntimes)]);
  ref.engine = std::string(kEngines[one_of(r, o["engine"], kEngines)]);
  {
    const Field names = o["names"];
    for (auto& name : text_set(r, names)) {
      if (r.failed()) break;
      if (ref.names.size() == kMaxNames) {
        r.fail(names.path, "more than " + std::to_string(kMaxNames) + " names");
      } else if (!sandbox::is_sandbox_name(name) || name == ref.sandbox_id) {
        r.fail(names.path, quote(name) + " is not a sandbox name (printable ASCII, no space, " +
                               "at most 253 bytes, not the id)");
      } else {
        ref.names.push_back(std::move(name));
      }
    }
  }
  {
    Object first(r, o["first_process"]);
    ref.first_process.pid = pid(r, first["pid"]);
    ref.first_process.start_time_ticks = unsigned_integer(r, first["start_time_ticks"]);
    first.done();
  }
  ref.membership = one_of(r, o["membership"], kMemberships) == 0 ? sandbox::Membership::cgroup
                                                                 : sandbox::Membership::descendants;
  {
    Object cgroups(r, o["cgroups"]);
    ref.cgroups.unified =
        nullable(r, cgroups["unified"], [&](const Field& e) { return text(r, e); });
    array(r, cgroups["v1"], kMaxCgroupV1Entries, [&](const Field& e) {
      if (!e.value.is_array() || e.value.size() != 2) {
        r.fail(e.path, "not a [controller, path] pair");
        return;
      }
      std::string controller = text(r, Field{e.value[0], e.path.index(0)}, /*non_empty=*/true);
      std::string path = text(r, Field{e.value[1], e.path.index(1)});
      ref.cgroups.v1.emplace_back(std::move(controller), std::move(path));
    });
    cgroups.done();
  }
  if (auto bundle = nullable(r, o["bundle"], [&](const Field& e) { return text(r, e); }))
    ref.bundle = std::filesystem::path(*bundle);
  o.done();
  return ref;
}

observe::ProcStatus read_status(Reader& r, const Field& f) {
  Object o(r, f);
  observe::ProcStatus s;
  s.name = text(r, o["name"]);
  s.tgid = pid(r, o["tgid"]);
  s.ppid = static_cast<int32_t>(integer(r, o["ppid"], 0, kMaxPid));  // 0: PID 1 and kthreads
  // Uid:/Gid: real, effective, saved, filesystem.
  const auto ids = [&](const Field& field, uint32_t(&out)[4]) {
    if (r.failed()) return;
    if (!field.value.is_array() || field.value.size() != 4) {
      r.fail(field.path, "not an array of 4 ids (real, effective, saved, filesystem)");
      return;
    }
    for (std::size_t i = 0; i < 4; ++i) {
      out[i] = static_cast<uint32_t>(unsigned_integer(r, Field{field.value[i], field.path.index(i)},
                                                      std::numeric_limits<uint32_t>::max()));
    }
  };
  ids(o["uid"], s.uid);
  ids(o["gid"], s.gid);
  s.groups = numbers<uint32_t>(r, o["groups"], kMaxGroups, [&](const Field& e) {
    return unsigned_integer(r, e, std::numeric_limits<uint32_t>::max());
  });
  s.nspid = numbers<int32_t>(r, o["nspid"], kMaxPidNamespaceDepth,
                             [&](const Field& e) { return pid(r, e); });
  s.cap_inheritable = unsigned_integer(r, o["cap_inheritable"]);
  s.cap_permitted = unsigned_integer(r, o["cap_permitted"]);
  s.cap_effective = unsigned_integer(r, o["cap_effective"]);
  s.cap_bounding = unsigned_integer(r, o["cap_bounding"]);
  s.cap_ambient = unsigned_integer(r, o["cap_ambient"]);
  s.no_new_privs = boolean(r, o["no_new_privs"]);
  s.seccomp = static_cast<int>(integer(r, o["seccomp"], 0, 2));
  o.done();
  return s;
}

// "RLIMIT_" and capitals: the names parse_limits gives, including any a
// newer kernel adds.
bool is_rlimit_name(std::string_view name) {
  constexpr std::string_view kPrefix = "RLIMIT_";
  return name.starts_with(kPrefix) && name.size() > kPrefix.size() && name.size() <= 64 &&
         std::all_of(name.begin() + kPrefix.size(), name.end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; });
}

std::vector<observe::Rlimit> read_rlimits(Reader& r, const Field& f) {
  std::vector<observe::Rlimit> out;
  const auto limit = [&](const Field& e) { return unsigned_integer(r, e); };
  array(r, f, kMaxRlimits, [&](const Field& e) {
    Object o(r, e);
    observe::Rlimit rlimit;
    const Field name = o["name"];
    if (!r.failed() &&
        (!name.value.is_string() || !is_rlimit_name(name.value.get_ref<const std::string&>()))) {
      r.fail(name.path, "not an rlimit name (RLIMIT_ and capitals)");
    }
    if (r.failed()) return;
    rlimit.name = name.value.get<std::string>();
    if (std::any_of(out.begin(), out.end(), [&](const auto& x) { return x.name == rlimit.name; }))
      r.fail(name.path, quote(rlimit.name) + " is listed twice");
    rlimit.soft = nullable(r, o["soft"], limit);
    rlimit.hard = nullable(r, o["hard"], limit);
    o.done();
    out.push_back(std::move(rlimit));
  });
  return out;
}

observe::CgroupLimits read_cgroup_limits(Reader& r, const Field& f) {
  Object o(r, f);
  observe::CgroupLimits limits;
  const auto bytes = [&](const Field& e) {
    return integer(r, e, 0, std::numeric_limits<int64_t>::max());
  };
  limits.memory_max = nullable(r, o["memory_max"], bytes);
  limits.pids_max = nullable(r, o["pids_max"], bytes);
  limits.cpu_max = nullable(r, o["cpu_max"], [&](const Field& e) -> std::string {
    if (r.failed()) return {};
    // Exactly what parse_cpu_max makes of cgroupfs text: "QUOTA PERIOD".
    const auto parsed = e.value.is_string()
                            ? observe::parse_cpu_max(e.value.get_ref<const std::string&>())
                            : Result<std::optional<std::string>>(fail("not a string"));
    if (!parsed || !*parsed || **parsed != e.value.get_ref<const std::string&>()) {
      r.fail(e.path, "not a cpu.max limit \"QUOTA PERIOD\" (two positive decimals)");
      return {};
    }
    return **parsed;
  });
  o.done();
  return limits;
}

projection::MemberObservation read_member(Reader& r, const Field& f) {
  Object o(r, f);
  projection::MemberObservation m;
  m.pid = pid(r, o["pid"]);
  m.start_time_ticks = unsigned_integer(r, o["start_time_ticks"]);
  m.status = read_status(r, o["status"]);
  m.namespaces = inodes(r, o["namespaces"]);
  m.rlimits = read_rlimits(r, o["rlimits"]);
  m.cgroup_limits = read_cgroup_limits(r, o["cgroup_limits"]);
  m.lsm_label = nullable(r, o["lsm_label"], [&](const Field& e) { return text(r, e); });
  m.argv = texts(r, o["argv"], kMaxArgvEntries);
  m.exe = text(r, o["exe"]);
  m.nested_user_namespace = boolean(r, o["nested_user_namespace"]);
  m.exiting = boolean(r, o["exiting"]);
  o.done();
  return m;
}

projection::MountView read_mount_view(Reader& r, const Field& f) {
  Object o(r, f);
  projection::MountView view;
  view.mount_namespace = unsigned_integer(r, o["mount_namespace"]);
  view.seen_through = pid(r, o["seen_through"]);
  view.root_readonly = boolean(r, o["root_readonly"]);
  view.masked = text_set(r, o["masked"]);
  view.readonly = text_set(r, o["readonly"]);
  o.done();
  return view;
}

projection::Observation read_observation(Reader& r, const Field& f) {
  Object o(r, f);
  projection::Observation obs;
  obs.sandbox_id = text(r, o["sandbox_id"], /*non_empty=*/true);
  obs.runtime = std::string(kRuntimes[one_of(r, o["runtime"], kRuntimes)]);
  const Field members = o["members"];
  array(r, members, kMaxMembers, [&](const Field& e) {
    auto member = read_member(r, e);
    if (!r.failed() && !obs.members.empty() && member.pid <= obs.members.back().pid) {
      r.fail(e.path.key("pid"), std::to_string(member.pid) + " is not above the previous pid " +
                                    std::to_string(obs.members.back().pid) +
                                    " (members are sorted by pid, each once)");
    }
    obs.members.push_back(std::move(member));
  });
  if (!r.failed() && obs.members.empty())
    r.fail(members.path, "empty (a sample has at least the sandbox's first process)");
  array(r, o["mount_views"], kMaxMembers, [&](const Field& e) {
    auto view = read_mount_view(r, e);
    if (!r.failed() && !obs.mount_views.empty() &&
        view.mount_namespace <= obs.mount_views.back().mount_namespace) {
      r.fail(e.path.key("mount_namespace"),
             std::to_string(view.mount_namespace) + " is not above the previous one " +
                 std::to_string(obs.mount_views.back().mount_namespace) +
                 " (mount views are sorted by mount namespace, each once)");
    }
    obs.mount_views.push_back(std::move(view));
  });
  obs.host_namespaces = inodes(r, o["host_namespaces"]);
  obs.vanished =
      numbers<pid_t>(r, o["vanished"], kMaxMembers, [&](const Field& e) { return pid(r, e); });
  o.done();
  return obs;
}

Sample read_sample(Reader& r, const Field& f) {
  Object o(r, f);
  Sample sample;
  const Field ref = o["ref"];
  sample.ref = read_ref(r, ref);
  const Field observation = o["observation"];
  sample.observation = read_observation(r, observation);
  sample.consumed_config_sha256 =
      nullable(r, o["consumed_config_sha256"], [&](const Field& e) { return sha256_hex(r, e); });
  sample.started_at = integer(r, o["started_at"], 0, kMaxUnixTime);
  sample.sampled_at = integer(r, o["sampled_at"], 0, kMaxUnixTime);
  sample.sample_seconds = seconds(r, o["sample_seconds"]);
  o.done();
  if (r.failed()) return sample;

  // What the sampler always gives: an observation of the ref's sandbox,
  // with the first process (the same one) among its members, or, when its
  // main thread has exited while other threads run on, a thread of it
  // (status.tgid) standing for it.
  const auto& obs = sample.observation;
  if (obs.sandbox_id != sample.ref.sandbox_id) {
    r.fail(observation.path.key("sandbox_id"),
           quote(obs.sandbox_id) + " is not the ref's " + quote(sample.ref.sandbox_id));
  } else if (obs.runtime != sample.ref.runtime) {
    r.fail(observation.path.key("runtime"),
           quote(obs.runtime) + " is not the ref's " + quote(sample.ref.runtime));
  } else {
    const auto& first = sample.ref.first_process;
    const auto it = std::lower_bound(obs.members.begin(), obs.members.end(), first.pid,
                                     [](const auto& m, pid_t p) { return m.pid < p; });
    const bool stood_for = std::ranges::any_of(obs.members, [&](const auto& m) {
      return m.pid != first.pid && m.status.tgid == first.pid;
    });
    if (it == obs.members.end() || it->pid != first.pid) {
      if (!stood_for)
        r.fail(
            observation.path.key("members"),
            "lacks the first process, pid " + std::to_string(first.pid) + ", and any thread of it");
    } else if (it->start_time_ticks != first.start_time_ticks) {
      r.fail(observation.path.key("members"),
             "has pid " + std::to_string(first.pid) + " started at tick " +
                 std::to_string(it->start_time_ticks) + ", not the first process (tick " +
                 std::to_string(first.start_time_ticks) + ")");
    }
  }
  return sample;
}

// Runs `read` on the document with a fresh Reader: its value, or the first
// error. Exceptions (a bug: every access is checked) become errors too.
template <class Read>
auto parse_document(std::string_view label, const json& document, Read read)
    -> Result<decltype(read(std::declval<Reader&>(), std::declval<const Field&>()))> {
  try {
    Reader r;
    const Path root(label);
    auto value = read(r, Field{document, root});
    if (r.failed()) return fail(r.error());
    return value;
  } catch (const std::exception& e) {
    return fail(label, ": internal error: ", e.what());
  }
}

// Cuts text to kMaxTextBytes at a code point boundary, and at a NUL.
void fit_text(std::string& text) {
  if (const auto nul = text.find('\0'); nul != std::string::npos) text.resize(nul);
  if (text.size() <= kMaxTextBytes) return;
  std::size_t end = kMaxTextBytes;
  // Back off continuation bytes (10xxxxxx) so a UTF-8 text stays UTF-8.
  for (int i = 0; i < 3 && end > 0 && (static_cast<unsigned char>(text[end]) & 0xC0) == 0x80; ++i)
    --end;
  text.resize(end);
}

}  // namespace

// ================================================================ public

std::string_view to_string(Request::Op op) {
  return op == Request::Op::sweep ? kOps[0] : kOps[1];
}

projection::ObservationScope scope_of(const Request& request, std::string_view sandbox_id) {
  const auto it = request.scopes.find(sandbox_id);
  return it != request.scopes.end() ? it->second : projection::default_scope();
}

nlohmann::json to_json(const Request& request) {
  json scopes = json::array();
  for (const auto& [sandbox_id, scope] : request.scopes)
    scopes.push_back(
        json::object({{"sandbox_id", text_json(sandbox_id)}, {"scope", scope_json(scope)}}));
  return json::object({{"type", "request"},
                       {"id", request.id},
                       {"op", std::string(to_string(request.op))},
                       {"sandbox_id", text_json(request.sandbox_id)},
                       {"scopes", scopes}});
}

nlohmann::json to_json(const Sample& sample) {
  return json::object({{"ref", ref_json(sample.ref)},
                       {"observation", observation_json(sample.observation)},
                       {"consumed_config_sha256", optional_json(sample.consumed_config_sha256)},
                       {"started_at", sample.started_at},
                       {"sampled_at", sample.sampled_at},
                       {"sample_seconds", sample.sample_seconds}});
}

nlohmann::json to_json(const Response& response) {
  json items = json::array();
  for (const auto& sample : response.items) items.push_back(to_json(sample));
  return json::object({{"type", "response"},
                       {"id", response.id},
                       {"items", items},
                       {"problems", texts_json(response.problems)},
                       {"error", optional_text_json(response.error)},
                       {"vanished", response.vanished}});
}

nlohmann::json to_json(const Hello& hello) {
  return json::object(
      {{"type", "hello"},
       {"host_namespaces", json::object({{"source", hello.host_namespaces.source},
                                         {"inodes", inodes_json(hello.host_namespaces.inodes)}})},
       {"confinement", hello.confinement},
       {"pid", hello.pid},
       {"proc_peer", json::object({{"pid", hello.proc_peer_pid},
                                   {"confinement", hello.proc_peer_confinement}})}});
}

Result<Request> parse_request(const nlohmann::json& document) {
  return parse_document("request", document, [](Reader& r, const Field& f) {
    Object o(r, f);
    Request request;
    expect_type(r, o["type"], "request");
    request.id = unsigned_integer(r, o["id"]);
    request.op = one_of(r, o["op"], kOps) == 0 ? Request::Op::sweep : Request::Op::sample_one;
    const Field sandbox_id = o["sandbox_id"];
    request.sandbox_id = text(r, sandbox_id);
    if (!r.failed() && request.op == Request::Op::sample_one && request.sandbox_id.empty())
      r.fail(sandbox_id.path, "empty (sample_one names a sandbox)");
    if (!r.failed() && request.op == Request::Op::sweep && !request.sandbox_id.empty())
      r.fail(sandbox_id.path, "not empty (a sweep samples every sandbox)");
    array(r, o["scopes"], kMaxSandboxes, [&](const Field& e) {
      Object entry(r, e);
      const Field id_field = entry["sandbox_id"];
      std::string id = text(r, id_field, /*non_empty=*/true);
      auto scope = read_scope(r, entry["scope"]);
      entry.done();
      if (r.failed()) return;
      if (!request.scopes.empty() && !(request.scopes.rbegin()->first < id)) {
        r.fail(id_field.path, quote(id) + " is not after " + quote(request.scopes.rbegin()->first) +
                                  " (scopes are sorted by sandbox, each once)");
        return;
      }
      request.scopes.emplace_hint(request.scopes.end(), std::move(id), std::move(scope));
    });
    o.done();
    return request;
  });
}

Result<Sample> parse_sample(const nlohmann::json& document) {
  return parse_document("sample", document, read_sample);
}

Result<Response> parse_response(const nlohmann::json& document) {
  return parse_document("response", document, [](Reader& r, const Field& f) {
    Object o(r, f);
    Response response;
    expect_type(r, o["type"], "response");
    response.id = unsigned_integer(r, o["id"]);
    std::set<std::string> seen;
    std::size_t index = 0;
    const Field items = o["items"];
    array(r, items, kMaxSandboxes, [&](const Field& e) {
      // "response: sample 3: observation...", as the header promises.
      const std::string label = "response: sample " + std::to_string(index++);
      const Path root(label);
      Sample sample = read_sample(r, Field{e.value, root});
      if (!r.failed() && !seen.insert(sample.ref.sandbox_id).second) {
        r.fail(root.key("ref").key("sandbox_id"),
               quote(sample.ref.sandbox_id) + " was sampled already in this response");
      }
      response.items.push_back(std::move(sample));
    });
    response.problems = texts(r, o["problems"], kMaxProblems);
    response.error = nullable(r, o["error"], [&](const Field& e) { return text(r, e); });
    const Field vanished = o["vanished"];
    response.vanished = boolean(r, vanished);
    o.done();
    if (!r.failed() && response.error && !response.items.empty())
      r.fail(items.path, "not empty next to an error");
    if (!r.failed() && response.vanished && !response.error)
      r.fail(vanished.path, "true without an error");
    return response;
  });
}

Result<Hello> parse_hello(const nlohmann::json& document) {
  return parse_document("hello", document, [](Reader& r, const Field& f) {
    Object o(r, f);
    Hello hello;
    expect_type(r, o["type"], "hello");
    {
      Object host(r, o["host_namespaces"]);
      hello.host_namespaces.source =
          std::string(kHostSources[one_of(r, host["source"], kHostSources)]);
      hello.host_namespaces.inodes = inodes(r, host["inodes"]);
      host.done();
    }
    hello.confinement = opaque_object(r, o["confinement"]);
    hello.pid = pid(r, o["pid"]);
    {
      Object peer(r, o["proc_peer"]);
      hello.proc_peer_pid = pid(r, peer["pid"]);
      hello.proc_peer_confinement = opaque_object(r, peer["confinement"]);
      peer.done();
    }
    o.done();
    return hello;
  });
}

Sample to_sample(SweepItem item) {
  Sample sample;
  sample.ref = std::move(item.ref);
  sample.observation = std::move(item.observation);
  sample.consumed_config_sha256 = std::move(item.consumed_config_sha256);
  sample.started_at = item.started_at;
  sample.sampled_at = item.sampled_at;
  sample.sample_seconds = item.sample_seconds;
  return sample;
}

Result<SweepItem> to_sweep_item(Sample sample, const projection::ObservationScope& scope) {
  auto observed = projection::observed_projection(sample.observation, scope);
  if (!observed) return wrap(observed.error(), "sample of ", quote(sample.ref.sandbox_id), ": ");
  SweepItem item;
  item.ref = std::move(sample.ref);
  item.observation = std::move(sample.observation);
  item.observed = std::move(*observed);
  item.consumed_config_sha256 = std::move(sample.consumed_config_sha256);
  item.started_at = sample.started_at;
  item.sampled_at = sample.sampled_at;
  item.sample_seconds = sample.sample_seconds;
  return item;
}

Result<void> check_answers(const Request& request, const Response& response) {
  if (response.id != request.id) {
    return fail("response ", std::to_string(response.id), " does not answer request ",
                std::to_string(request.id));
  }
  if (request.op == Request::Op::sweep) {
    if (response.error) return fail("sweep ", std::to_string(request.id), " answered by an error");
    return {};
  }
  if (response.error) return {};
  // A resample may name the sandbox by one of its names (a launch event's).
  const auto answers = [&](const sandbox::SandboxRef& ref) {
    return ref.sandbox_id == request.sandbox_id ||
           std::find(ref.names.begin(), ref.names.end(), request.sandbox_id) != ref.names.end();
  };
  if (response.items.size() != 1 || !answers(response.items[0].ref)) {
    return fail("sample_one ", std::to_string(request.id), " of ", quote(request.sandbox_id),
                " answered by ", std::to_string(response.items.size()),
                " samples instead of that sandbox's");
  }
  return {};
}

void fit_to_limits(Response& response) {
  std::vector<Sample> kept;
  std::set<std::string> seen;
  std::size_t over = 0;
  for (auto& sample : response.items) {
    for (auto& m : sample.observation.members) {
      fit_text(m.status.name);
      if (m.argv.size() > kMaxArgvEntries) m.argv.resize(kMaxArgvEntries);
      for (auto& arg : m.argv) fit_text(arg);
      fit_text(m.exe);
      if (m.lsm_label) fit_text(*m.lsm_label);
    }
    if (kept.size() == kMaxSandboxes) {
      ++over;
      continue;
    }
    if (seen.contains(sample.ref.sandbox_id)) {
      // As Correlator::apply_sweep would: the first sample of an id counts.
      response.problems.push_back("sandbox " + quote(sample.ref.sandbox_id) +
                                  ": found twice; the second sample is not sent");
      continue;
    }
    if (auto checked = parse_sample(to_json(sample)); !checked) {
      response.problems.push_back(
          "sandbox " + quote(sample.ref.sandbox_id) +
          ": sample not sent, it does not fit the protocol: " + checked.error().message);
      continue;
    }
    seen.insert(sample.ref.sandbox_id);
    kept.push_back(std::move(sample));
  }
  response.items = std::move(kept);
  if (over > 0) {
    response.problems.push_back(std::to_string(over) + " sandboxes not sent: more than " +
                                std::to_string(kMaxSandboxes) + " in one response");
  }
  for (auto& problem : response.problems) fit_text(problem);
  if (response.problems.size() > kMaxProblems) {
    const std::size_t left_out = response.problems.size() - (kMaxProblems - 1);
    response.problems.resize(kMaxProblems - 1);
    response.problems.push_back(std::to_string(left_out) + " more problems not sent");
  }
  if (response.error) fit_text(*response.error);
}

std::vector<std::string> fit_to_limits(Request& request) {
  std::vector<std::string> problems;
  std::size_t kept = 0;
  for (auto it = request.scopes.begin(); it != request.scopes.end();) {
    Reader r;
    const Path root("scope");
    text(r, Field{text_json(it->first), root.key("sandbox_id")}, /*non_empty=*/true);
    read_scope(r, Field{scope_json(it->second), root});
    if (!r.failed() && kept == kMaxSandboxes)
      r.fail(root, "more than " + std::to_string(kMaxSandboxes) + " sandboxes have a scope");
    if (r.failed()) {
      problems.push_back(
          "sandbox " + quote(it->first) +
          ": observed in the default scope, its own does not fit the protocol: " + r.error());
      it = request.scopes.erase(it);
    } else {
      ++kept;
      ++it;
    }
  }
  return problems;
}

// ================================================================ the proc peer

nlohmann::json to_json(const PeerRequest& request) {
  json links = json::array();
  for (const auto& link : request.links)
    links.push_back(json::object({{"pid", link.pid}, {"name", link.name}}));
  const bool root_view = request.op == PeerRequest::Op::root_view;
  return json::object({{"type", "peer_request"},
                       {"id", request.id},
                       {"op", std::string(kPeerOps[root_view ? 1 : 0])},
                       {"links", links},
                       {"pid", root_view ? json(request.pid) : json(nullptr)},
                       {"paths", texts_json(request.paths)}});
}

nlohmann::json to_json(const PeerResponse& response) {
  json links = json::array();
  for (const auto& link : response.links)
    links.push_back(json::object({{"errno", link.error}, {"target", text_json(link.target)}}));
  json view = nullptr;
  if (response.root_view) {
    json states = json::array();
    for (auto state : response.root_view->states)
      states.push_back(std::string(sandbox::to_string(state)));
    view = json::object({{"opened", response.root_view->opened},
                         {"read_only", response.root_view->read_only},
                         {"states", states}});
  }
  return json::object(
      {{"type", "peer_response"}, {"id", response.id}, {"links", links}, {"root_view", view}});
}

nlohmann::json to_json(const PeerHello& hello) {
  return json::object(
      {{"type", "peer_hello"}, {"pid", hello.pid}, {"confinement", hello.confinement}});
}

Result<PeerRequest> parse_peer_request(const nlohmann::json& document) {
  return parse_document("peer request", document, [](Reader& r, const Field& f) {
    Object o(r, f);
    PeerRequest request;
    expect_type(r, o["type"], "peer_request");
    request.id = unsigned_integer(r, o["id"]);
    request.op =
        one_of(r, o["op"], kPeerOps) == 0 ? PeerRequest::Op::links : PeerRequest::Op::root_view;
    const bool root_view = request.op == PeerRequest::Op::root_view;
    const Field links = o["links"];
    array(r, links, root_view ? 0 : kMaxPeerLinks, [&](const Field& e) {
      Object link(r, e);
      sandbox::ProcLink out;
      out.pid = pid(r, link["pid"]);
      const Field name = link["name"];
      if (!r.failed() && !(name.value.is_string() &&
                           sandbox::is_proc_link_name(name.value.get_ref<const std::string&>())))
        r.fail(
            name.path,
            "not exe nor ns/<kind> of a namespace kind (of the process or of task/<thread id>/)");
      if (!r.failed()) out.name = name.value.get<std::string>();
      link.done();
      request.links.push_back(std::move(out));
    });
    const Field target = o["pid"];
    if (root_view)
      request.pid = pid(r, target);
    else if (!r.failed() && !target.value.is_null())
      r.fail(target.path, "not null in a links request");
    request.paths = texts(r, o["paths"], root_view ? kMaxRootViewPaths : 0);
    o.done();
    return request;
  });
}

Result<PeerResponse> parse_peer_response(const nlohmann::json& document,
                                         const PeerRequest& request) {
  return parse_document("peer response", document, [&](Reader& r, const Field& f) {
    Object o(r, f);
    PeerResponse response;
    expect_type(r, o["type"], "peer_response");
    const Field id = o["id"];
    response.id = unsigned_integer(r, id);
    if (!r.failed() && response.id != request.id)
      r.fail(id.path, std::to_string(response.id) + " does not answer request " +
                          std::to_string(request.id));
    const bool root_view = request.op == PeerRequest::Op::root_view;
    const Field links = o["links"];
    array(r, links, root_view ? 0 : request.links.size(), [&](const Field& e) {
      Object link(r, e);
      observe::LinkRead out;
      out.error = static_cast<int>(integer(r, link["errno"], 0, kMaxErrno));
      const Field target = link["target"];
      out.target = text(r, target);
      if (!r.failed() && (out.error == 0) == out.target.empty())
        r.fail(target.path, out.error ? "not empty next to an errno" : "empty without an errno");
      link.done();
      response.links.push_back(std::move(out));
    });
    if (!r.failed() && response.links.size() != (root_view ? 0 : request.links.size()))
      r.fail(links.path, std::to_string(response.links.size()) + " answers to " +
                             std::to_string(request.links.size()) + " links");
    const Field view = o["root_view"];
    if (!root_view) {
      if (!r.failed() && !view.value.is_null())
        r.fail(view.path, "not null in the answer to a links request");
    } else {
      Object v(r, view);
      sandbox::RootView out;
      out.opened = boolean(r, v["opened"]);
      out.read_only = boolean(r, v["read_only"]);
      const Field states = v["states"];
      const std::size_t expected = out.opened ? request.paths.size() : 0;
      array(r, states, expected, [&](const Field& e) {
        out.states.push_back(sandbox::kAllPathStates[one_of(r, e, kPathStates)]);
      });
      if (!r.failed() && out.states.size() != expected)
        r.fail(states.path, std::to_string(out.states.size()) + " states for " +
                                std::to_string(expected) + " paths");
      v.done();
      response.root_view = std::move(out);
    }
    o.done();
    return response;
  });
}

Result<PeerHello> parse_peer_hello(const nlohmann::json& document) {
  return parse_document("peer hello", document, [](Reader& r, const Field& f) {
    Object o(r, f);
    PeerHello hello;
    expect_type(r, o["type"], "peer_hello");
    hello.pid = pid(r, o["pid"]);
    hello.confinement = opaque_object(r, o["confinement"]);
    o.done();
    return hello;
  });
}

void fit_to_limits(PeerResponse& response) {
  for (auto& link : response.links) {
    fit_text(link.target);
    // A target cut to nothing (a NUL first) still answers: as an error.
    if (link.error == 0 && link.target.empty()) link.error = ENAMETOOLONG;
  }
}

// ================================================================ framing

std::string encode_frame(const nlohmann::json& message) {
  const std::string body = message.dump(-1, ' ', false, json::error_handler_t::replace);
  // A body too long for the length field gets the largest length, which
  // every reader refuses, rather than a wrapped one.
  const auto length = static_cast<uint32_t>(
      std::min<std::size_t>(body.size(), std::numeric_limits<uint32_t>::max()));
  std::string frame;
  frame.reserve(kFrameHeaderBytes + body.size());
  frame.push_back(static_cast<char>((length >> 24) & 0xFF));
  frame.push_back(static_cast<char>((length >> 16) & 0xFF));
  frame.push_back(static_cast<char>((length >> 8) & 0xFF));
  frame.push_back(static_cast<char>(length & 0xFF));
  frame += body;
  return frame;
}

FrameReader::FrameReader(std::size_t max_frame_bytes) : max_frame_bytes_(max_frame_bytes) {}

void FrameReader::feed(std::string_view bytes) {
  if (failed_) return;
  buffer_.append(bytes);
}

Result<std::optional<nlohmann::json>> FrameReader::next() {
  if (failed_) return std::unexpected(*failed_);
  try {
    const std::size_t available = buffer_.size() - consumed_;
    if (available < kFrameHeaderBytes) return std::nullopt;
    const auto* header = reinterpret_cast<const unsigned char*>(buffer_.data() + consumed_);
    const std::size_t length = (std::size_t{header[0]} << 24) | (std::size_t{header[1]} << 16) |
                               (std::size_t{header[2]} << 8) | std::size_t{header[3]};
    if (length > max_frame_bytes_) {
      failed_ = Error{"frame of " + std::to_string(length) + " bytes is longer than the limit of " +
                      std::to_string(max_frame_bytes_) + " bytes"};
      return std::unexpected(*failed_);
    }
    if (available - kFrameHeaderBytes < length) return std::nullopt;
    auto document =
        parse_json(std::string_view(buffer_).substr(consumed_ + kFrameHeaderBytes, length), "frame",
                   max_frame_bytes_);
    consumed_ += kFrameHeaderBytes + length;
    // Drop what was returned once it is the larger part of the buffer, so
    // that the buffer stays about one frame long and erasing stays cheap.
    if (consumed_ == buffer_.size()) {
      buffer_.clear();
      consumed_ = 0;
    } else if (consumed_ * 2 >= buffer_.size()) {
      buffer_.erase(0, consumed_);
      consumed_ = 0;
    }
    if (!document) {
      failed_ = document.error();
      return std::unexpected(*failed_);
    }
    return std::optional<nlohmann::json>(std::move(*document));
  } catch (const std::exception& e) {
    failed_ = Error{std::string("frame reader: internal error: ") + e.what()};
    return std::unexpected(*failed_);
  }
}

}  // namespace driftwatch::correlate::wire

namespace driftwatch::correlate::wire {

Result<nlohmann::json> read_frame(int fd, FrameReader& reader) {
  char buffer[1 << 16];
  for (;;) {
    DW_TRY(frame, reader.next());
    if (frame) return std::move(*frame);
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n == 0) return fail("end of stream");
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return fail("no answer in time");
      return fail("read: ", describe_errno(errno));
    }
    reader.feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

Result<void> write_frame(int fd, const nlohmann::json& message) {
  const std::string bytes = encode_frame(message);
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("send: ", describe_errno(errno));
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace driftwatch::correlate::wire
