#include "observe/proc_parsers.hpp"

#include "common/text.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <type_traits>

namespace driftwatch::observe {
namespace {

// A decimal integer that is the whole token: no sign for unsigned types, no
// leading '+', no trailing bytes, in range.
template <class Int>
std::optional<Int> parse_decimal(std::string_view token) {
  static_assert(std::is_integral_v<Int>);
  if (token.empty()) return std::nullopt;
  Int value{};
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, value, 10);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

// A PID as the kernel prints it: a non-negative decimal that fits pid_t.
std::optional<int32_t> parse_pid(std::string_view token) {
  auto value = parse_decimal<int32_t>(token);
  if (!value || *value < 0) return std::nullopt;
  return value;
}

// A capability mask of /proc/PID/status: exactly 16 hex digits.
std::optional<uint64_t> parse_cap_mask(std::string_view token) {
  if (token.size() != 16) return std::nullopt;
  uint64_t value = 0;
  const char* end = token.data() + token.size();
  auto [ptr, ec] = std::from_chars(token.data(), end, value, 16);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  return value;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (is_blank(s.front()) || s.front() == '\n')) s.remove_prefix(1);
  while (!s.empty() && (is_blank(s.back()) || s.back() == '\n')) s.remove_suffix(1);
  return s;
}

// Splits at runs of spaces and tabs; no empty tokens.
std::vector<std::string_view> split_blanks(std::string_view s) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && is_blank(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !is_blank(s[i])) ++i;
    if (i > start) tokens.push_back(s.substr(start, i - start));
  }
  return tokens;
}

// Splits at every occurrence of `sep` into `tokens`; empty tokens are kept.
void split_exact(std::string_view s, char sep, std::vector<std::string_view>& tokens) {
  tokens.clear();
  size_t start = 0;
  while (true) {
    size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      tokens.push_back(s.substr(start));
      return;
    }
    tokens.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::vector<std::string_view> split_exact(std::string_view s, char sep) {
  std::vector<std::string_view> tokens;
  split_exact(s, sep, tokens);
  return tokens;
}

// Calls fn(line_number, line) for each line; the empty remainder after a
// final newline is not a line. fn returns an Error to stop.
template <class Fn>
std::optional<Error> for_each_line(std::string_view text, Fn&& fn) {
  size_t number = 0;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    ++number;
    if (auto error = fn(number, text.substr(start, end - start))) return error;
    start = end + 1;
  }
  return std::nullopt;
}

Error error_of(std::unexpected<Error> e) {
  return std::move(e).error();
}

// ---- status ---------------------------------------------------------------

enum StatusField : uint32_t {
  kName = 1u << 0,
  kTgid = 1u << 1,
  kPPid = 1u << 2,
  kUid = 1u << 3,
  kGid = 1u << 4,
  kGroups = 1u << 5,
  kNSpid = 1u << 6,
  kCapInh = 1u << 7,
  kCapPrm = 1u << 8,
  kCapEff = 1u << 9,
  kCapBnd = 1u << 10,
  kCapAmb = 1u << 11,
  kNoNewPrivs = 1u << 12,
  kSeccomp = 1u << 13,
  kThreads = 1u << 14,
};

struct StatusKey {
  std::string_view key;
  StatusField field;
};

constexpr std::array kStatusKeys = {
    StatusKey{"Name", kName},
    StatusKey{"Tgid", kTgid},
    StatusKey{"PPid", kPPid},
    StatusKey{"Uid", kUid},
    StatusKey{"Gid", kGid},
    StatusKey{"Groups", kGroups},
    StatusKey{"NSpid", kNSpid},
    StatusKey{"CapInh", kCapInh},
    StatusKey{"CapPrm", kCapPrm},
    StatusKey{"CapEff", kCapEff},
    StatusKey{"CapBnd", kCapBnd},
    StatusKey{"CapAmb", kCapAmb},
    StatusKey{"NoNewPrivs", kNoNewPrivs},
    StatusKey{"Seccomp", kSeccomp},
    StatusKey{"Threads", kThreads},
};

// Lines every kernel driftwatch supports prints; CapAmb (4.3+) may be
// missing on older kernels and NSpid (4.1+) is informational only.
constexpr uint32_t kRequiredStatusFields =
    kUid | kGid | kCapInh | kCapPrm | kCapEff | kCapBnd | kNoNewPrivs | kSeccomp;

std::optional<Error> parse_status_field(StatusField field, std::string_view key,
                                        std::string_view raw_value, ProcStatus& out) {
  const std::string_view value = trim(raw_value);
  auto bad_value = [&] { return error_of(fail("status: bad ", key, " value ", quote(value))); };
  switch (field) {
    case kName:
      // The kernel writes one tab after the colon; the name itself may hold
      // spaces (it escapes tabs and newlines), so only that tab is dropped.
      if (!raw_value.empty() && raw_value.front() == '\t') raw_value.remove_prefix(1);
      out.name = std::string(raw_value);
      return std::nullopt;
    case kTgid:
    case kPPid: {
      auto pid = parse_pid(value);
      if (!pid) return bad_value();
      (field == kTgid ? out.tgid : out.ppid) = *pid;
      return std::nullopt;
    }
    case kUid:
    case kGid: {
      auto tokens = split_blanks(value);
      if (tokens.size() != 4) return bad_value();
      uint32_t* ids = field == kUid ? out.uid : out.gid;
      for (size_t i = 0; i < 4; ++i) {
        auto id = parse_decimal<uint32_t>(tokens[i]);
        if (!id) return bad_value();
        ids[i] = *id;
      }
      return std::nullopt;
    }
    case kGroups:
      for (auto token : split_blanks(value)) {
        auto id = parse_decimal<uint32_t>(token);
        if (!id) return bad_value();
        out.groups.push_back(*id);
      }
      return std::nullopt;
    case kNSpid: {
      auto tokens = split_blanks(value);
      if (tokens.empty()) return bad_value();
      for (auto token : tokens) {
        auto pid = parse_pid(token);
        if (!pid) return bad_value();
        out.nspid.push_back(*pid);
      }
      return std::nullopt;
    }
    case kCapInh:
    case kCapPrm:
    case kCapEff:
    case kCapBnd:
    case kCapAmb: {
      auto mask = parse_cap_mask(value);
      if (!mask) return bad_value();
      uint64_t& slot = field == kCapInh   ? out.cap_inheritable
                       : field == kCapPrm ? out.cap_permitted
                       : field == kCapEff ? out.cap_effective
                       : field == kCapBnd ? out.cap_bounding
                                          : out.cap_ambient;
      slot = *mask;
      return std::nullopt;
    }
    case kNoNewPrivs:
      if (value == "0") {
        out.no_new_privs = false;
      } else if (value == "1") {
        out.no_new_privs = true;
      } else {
        return bad_value();
      }
      return std::nullopt;
    case kThreads: {
      auto count = parse_decimal<int32_t>(value);
      if (!count || *count < 1) return bad_value();
      out.threads = *count;
      return std::nullopt;
    }
    case kSeccomp: {
      auto mode = parse_decimal<int>(value);
      if (!mode || *mode < 0 || *mode > 2) return bad_value();
      out.seccomp = *mode;
      return std::nullopt;
    }
  }
  return bad_value();
}

// ---- limits ---------------------------------------------------------------

struct LimitRow {
  std::string_view title;
  std::string_view name;
};

constexpr std::array kLimitRows = {
    LimitRow{"Max cpu time", "RLIMIT_CPU"},
    LimitRow{"Max file size", "RLIMIT_FSIZE"},
    LimitRow{"Max data size", "RLIMIT_DATA"},
    LimitRow{"Max stack size", "RLIMIT_STACK"},
    LimitRow{"Max core file size", "RLIMIT_CORE"},
    LimitRow{"Max resident set", "RLIMIT_RSS"},
    LimitRow{"Max processes", "RLIMIT_NPROC"},
    LimitRow{"Max open files", "RLIMIT_NOFILE"},
    LimitRow{"Max locked memory", "RLIMIT_MEMLOCK"},
    LimitRow{"Max address space", "RLIMIT_AS"},
    LimitRow{"Max file locks", "RLIMIT_LOCKS"},
    LimitRow{"Max pending signals", "RLIMIT_SIGPENDING"},
    LimitRow{"Max msgqueue size", "RLIMIT_MSGQUEUE"},
    LimitRow{"Max nice priority", "RLIMIT_NICE"},
    LimitRow{"Max realtime priority", "RLIMIT_RTPRIO"},
    LimitRow{"Max realtime timeout", "RLIMIT_RTTIME"},
};

// The kernel prints RLIM_INFINITY as "unlimited" and anything else as %lu.
std::optional<std::optional<uint64_t>> parse_rlimit_value(std::string_view token) {
  if (token == "unlimited") return std::optional<uint64_t>{};
  auto value = parse_decimal<uint64_t>(token);
  if (!value) return std::nullopt;
  return std::optional<uint64_t>{*value};
}

// ---- mountinfo ------------------------------------------------------------

// Undoes the kernel's mangle(): space, tab, newline and backslash are written
// as \ooo. A backslash not followed by three octal digits is malformed.
std::optional<std::string> decode_octal(std::string_view field) {
  if (field.find('\\') == std::string_view::npos) return std::string(field);
  std::string out;
  out.reserve(field.size());
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] != '\\') {
      out += field[i];
      continue;
    }
    if (field.size() - i < 4) return std::nullopt;
    int value = 0;
    for (size_t k = 1; k <= 3; ++k) {
      const char digit = field[i + k];
      if (digit < '0' || digit > '7') return std::nullopt;
      value = value * 8 + (digit - '0');
    }
    if (value > 0xff) return std::nullopt;
    out += static_cast<char>(value);
    i += 3;
  }
  return out;
}

std::vector<std::string> split_options(std::string_view options) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(std::count(options.begin(), options.end(), ',')) + 1);
  size_t start = 0;
  while (start <= options.size()) {
    size_t end = options.find(',', start);
    if (end == std::string_view::npos) end = options.size();
    if (end > start) out.emplace_back(options.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Result<ProcStatus> parse_status(std::string_view text) {
  if (text.empty()) return fail("status: empty file");
  ProcStatus status;
  uint32_t seen = 0;
  auto error =
      for_each_line(text, [&](size_t number, std::string_view line) -> std::optional<Error> {
        if (line.empty()) return std::nullopt;
        const size_t colon = line.find(':');
        if (colon == std::string_view::npos) {
          return error_of(
              fail("status: line ", std::to_string(number), " has no ':': ", quote(line)));
        }
        const std::string_view key = line.substr(0, colon);
        auto known = std::find_if(kStatusKeys.begin(), kStatusKeys.end(),
                                  [&](const StatusKey& k) { return k.key == key; });
        if (known == kStatusKeys.end()) return std::nullopt;  // a line driftwatch does not use
        if (seen & known->field) return error_of(fail("status: duplicate ", key, " line"));
        seen |= known->field;
        return parse_status_field(known->field, key, line.substr(colon + 1), status);
      });
  if (error) return std::unexpected(std::move(*error));
  for (const auto& k : kStatusKeys) {
    if ((kRequiredStatusFields & k.field) && !(seen & k.field)) {
      return fail("status: missing ", k.key, " line (truncated file?)");
    }
  }
  return status;
}

Result<ProcStat> parse_stat(std::string_view text) {
  text = trim(text);
  if (text.empty()) return fail("stat: empty file");
  // comm may contain anything, ") " included; the fields after it never
  // contain ')', so the last ')' ends comm.
  const size_t open = text.find('(');
  const size_t close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return fail("stat: no '(comm)' in ", quote(text));
  }
  if (open == 0 || text[open - 1] != ' ') return fail("stat: bad pid field ", quote(text));
  ProcStat stat;
  auto pid = parse_pid(text.substr(0, open - 1));
  if (!pid) return fail("stat: bad pid field ", quote(text.substr(0, open - 1)));
  stat.pid = *pid;
  stat.comm = std::string(text.substr(open + 1, close - open - 1));

  std::string_view rest = text.substr(close + 1);
  if (rest.empty() || rest.front() != ' ') {
    return fail("stat: fields after comm missing in ", quote(text));
  }
  auto fields = split_blanks(rest);
  // fields[0] is field 3 (state); field N is fields[N - 3].
  constexpr size_t kStateIndex = 0, kPpidIndex = 1, kFlagsIndex = 9 - 3, kStartTimeIndex = 22 - 3;
  if (fields.size() <= kStartTimeIndex) {
    return fail("stat: only ", std::to_string(fields.size() + 2),
                " fields, need at least 22 (truncated file?)");
  }
  if (fields[kStateIndex].size() != 1) {
    return fail("stat: bad state field ", quote(fields[kStateIndex]));
  }
  stat.state = fields[kStateIndex].front();
  auto ppid = parse_pid(fields[kPpidIndex]);
  if (!ppid) return fail("stat: bad ppid field ", quote(fields[kPpidIndex]));
  stat.ppid = *ppid;
  auto flags = parse_decimal<uint32_t>(fields[kFlagsIndex]);
  if (!flags) return fail("stat: bad flags field ", quote(fields[kFlagsIndex]));
  stat.flags = *flags;
  auto start = parse_decimal<uint64_t>(fields[kStartTimeIndex]);
  if (!start) return fail("stat: bad starttime field ", quote(fields[kStartTimeIndex]));
  stat.start_time_ticks = *start;
  return stat;
}

Result<std::vector<Rlimit>> parse_limits(std::string_view text) {
  if (text.empty()) return fail("limits: empty file");
  std::vector<Rlimit> rows;
  auto error =
      for_each_line(text, [&](size_t number, std::string_view line) -> std::optional<Error> {
        // Built only on the error path: this loop is on the sampling hot path.
        auto where = [number] { return "limits line " + std::to_string(number) + ": "; };
        if (number == 1) {
          if (line.substr(0, 5) != "Limit") {
            return error_of(fail(where(), "expected the 'Limit' header, got ", quote(line)));
          }
          return std::nullopt;
        }
        if (trim(line).empty()) return std::nullopt;
        // Titles are padded to a fixed width; match the known title followed by
        // padding rather than cutting at a column, so a wider title still parses.
        auto row = std::find_if(kLimitRows.begin(), kLimitRows.end(), [&](const LimitRow& r) {
          return line.size() > r.title.size() && line.substr(0, r.title.size()) == r.title &&
                 is_blank(line[r.title.size()]);
        });
        if (row == kLimitRows.end()) return error_of(fail(where(), "unknown row ", quote(line)));
        for (const auto& seen : rows) {
          if (seen.name == row->name)
            return error_of(fail(where(), "duplicate row ", quote(row->title)));
        }
        auto tokens = split_blanks(line.substr(row->title.size()));
        // soft, hard, and a unit for all rows but the priorities.
        if (tokens.size() < 2 || tokens.size() > 3) {
          return error_of(fail(where(), "expected soft, hard and unit in ", quote(line)));
        }
        auto soft = parse_rlimit_value(tokens[0]);
        if (!soft) return error_of(fail(where(), "bad soft limit ", quote(tokens[0])));
        auto hard = parse_rlimit_value(tokens[1]);
        if (!hard) return error_of(fail(where(), "bad hard limit ", quote(tokens[1])));
        rows.push_back(Rlimit{std::string(row->name), *soft, *hard});
        return std::nullopt;
      });
  if (error) return std::unexpected(std::move(*error));
  return rows;
}

bool MountEntry::read_only() const {
  return std::find(mount_options.begin(), mount_options.end(), "ro") != mount_options.end();
}

Result<std::vector<MountEntry>> parse_mountinfo(std::string_view text) {
  std::vector<MountEntry> mounts;
  mounts.reserve(static_cast<size_t>(std::count(text.begin(), text.end(), '\n')));
  std::vector<std::string_view> fields;
  auto error =
      for_each_line(text, [&](size_t number, std::string_view line) -> std::optional<Error> {
        // Built only on the error path: this loop is on the sampling hot path.
        auto where = [number] { return "mountinfo line " + std::to_string(number) + ": "; };
        // Fields are separated by single spaces and never contain one (the
        // kernel escapes it), but a field may be empty: mount(2) accepts "" as
        // the source. So split exactly, keeping empty tokens.
        split_exact(line, ' ', fields);
        // 36 35 98:0 /root /mnt rw,noatime [optional…] - ext4 /dev/vda rw,errors=continue
        constexpr size_t kFixed = 6;
        if (fields.size() < kFixed + 4) {
          return error_of(fail(where(), "too few fields in ", quote(line)));
        }
        MountEntry entry;
        auto mount_id = parse_decimal<uint32_t>(fields[0]);
        if (!mount_id) return error_of(fail(where(), "bad mount id ", quote(fields[0])));
        auto parent_id = parse_decimal<uint32_t>(fields[1]);
        if (!parent_id) return error_of(fail(where(), "bad parent id ", quote(fields[1])));
        const size_t colon = fields[2].find(':');
        auto major = parse_decimal<uint32_t>(fields[2].substr(0, colon));
        auto minor = colon == std::string_view::npos
                         ? std::nullopt
                         : parse_decimal<uint32_t>(fields[2].substr(colon + 1));
        if (!major || !minor) return error_of(fail(where(), "bad major:minor ", quote(fields[2])));
        entry.mount_id = *mount_id;
        entry.parent_id = *parent_id;
        entry.major = *major;
        entry.minor = *minor;

        auto root = decode_octal(fields[3]);
        if (!root || root->empty()) return error_of(fail(where(), "bad root ", quote(fields[3])));
        auto mount_point = decode_octal(fields[4]);
        if (!mount_point || mount_point->empty()) {
          return error_of(fail(where(), "bad mount point ", quote(fields[4])));
        }
        if (fields[5].empty()) return error_of(fail(where(), "empty mount options"));
        entry.root = std::move(*root);
        entry.mount_point = std::move(*mount_point);
        entry.mount_options = split_options(fields[5]);

        // Optional fields ("shared:1", "master:2", …) end at a lone "-".
        size_t dash = kFixed;
        while (dash < fields.size() && fields[dash] != "-") ++dash;
        if (dash == fields.size())
          return error_of(fail(where(), "no ' - ' separator in ", quote(line)));
        if (fields.size() - dash - 1 != 3) {
          return error_of(fail(
              where(), "expected fs type, source and super options after ' - ' in ", quote(line)));
        }
        auto fs_type = decode_octal(fields[dash + 1]);
        if (!fs_type || fs_type->empty()) {
          return error_of(fail(where(), "bad fs type ", quote(fields[dash + 1])));
        }
        auto source = decode_octal(fields[dash + 2]);
        if (!source) return error_of(fail(where(), "bad source ", quote(fields[dash + 2])));
        entry.fs_type = std::move(*fs_type);
        entry.source = std::move(*source);
        entry.super_options = split_options(fields[dash + 3]);
        mounts.push_back(std::move(entry));
        return std::nullopt;
      });
  if (error) return std::unexpected(std::move(*error));
  return mounts;
}

std::optional<std::string> CgroupMembership::v1_path(std::string_view controller) const {
  for (const auto& [name, path] : v1) {
    if (name == controller) return path;
  }
  return std::nullopt;
}

Result<CgroupMembership> parse_proc_cgroup(std::string_view text) {
  CgroupMembership membership;
  auto error =
      for_each_line(text, [&](size_t number, std::string_view line) -> std::optional<Error> {
        // Built only on the error path: this loop is on the sampling hot path.
        auto where = [number] { return "cgroup line " + std::to_string(number) + ": "; };
        // hierarchy-id:controller-list:path; the path may itself contain ':'.
        const size_t first = line.find(':');
        const size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
        if (second == std::string_view::npos) {
          return error_of(fail(where(), "expected 'id:controllers:path', got ", quote(line)));
        }
        const std::string_view id = line.substr(0, first);
        const std::string_view controllers = line.substr(first + 1, second - first - 1);
        const std::string_view path = line.substr(second + 1);
        if (!parse_decimal<uint32_t>(id)) {
          return error_of(fail(where(), "bad hierarchy id ", quote(id)));
        }
        if (path.empty() || path.front() != '/') {
          return error_of(fail(where(), "bad cgroup path ", quote(path)));
        }
        if (controllers.empty()) {
          if (id != "0")
            return error_of(fail(where(), "no controllers on v1 hierarchy ", quote(id)));
          if (membership.unified) return error_of(fail(where(), "second v2 line"));
          membership.unified = std::string(path);
          return std::nullopt;
        }
        for (auto controller : split_exact(controllers, ',')) {
          if (controller.empty() || controller == "name=") {
            return error_of(fail(where(), "bad controller list ", quote(controllers)));
          }
          if (membership.v1_path(controller)) {
            return error_of(fail(where(), "controller ", quote(controller), " listed twice"));
          }
          membership.v1.emplace_back(std::string(controller), std::string(path));
        }
        return std::nullopt;
      });
  if (error) return std::unexpected(std::move(*error));
  return membership;
}

std::vector<std::string> parse_cmdline(std::string_view bytes) {
  std::vector<std::string> argv;
  if (bytes.empty()) return argv;
  if (bytes.back() == '\0') bytes.remove_suffix(1);
  for (auto arg : split_exact(bytes, '\0')) argv.emplace_back(arg);
  return argv;
}

std::optional<std::string> parse_lsm_label(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.remove_suffix(1);
  if (text.empty() || text == "unconfined") return std::nullopt;
  return std::string(text);
}

Result<uint64_t> parse_ns_link(std::string_view target) {
  // "net:[4026531840]"
  const size_t colon = target.find(':');
  if (colon == 0 || colon == std::string_view::npos || target.size() < colon + 4 ||
      target[colon + 1] != '[' || target.back() != ']') {
    return fail("namespace link: expected 'kind:[inode]', got ", quote(target));
  }
  const std::string_view digits = target.substr(colon + 2, target.size() - colon - 3);
  auto inode = parse_decimal<uint64_t>(digits);
  if (!inode) return fail("namespace link: bad inode ", quote(digits), " in ", quote(target));
  return *inode;
}

}  // namespace driftwatch::observe
