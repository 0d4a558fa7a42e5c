#include "support/oci_bundle.hpp"

#include <elf.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

namespace driftwatch::testing {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

constexpr long kCgroup2SuperMagic = 0x63677270;
constexpr auto kRuntimeTimeout = 60s;

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file(const fs::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool is_cgroup2(const fs::path& path) {
  struct statfs st {};
  return ::statfs(path.c_str(), &st) == 0 && static_cast<long>(st.f_type) == kCgroup2SuperMagic;
}

// The controllers crun 1.8 trips over: on a hybrid host (v1 controllers under
// /sys/fs/cgroup, cgroup2 at unified/) any controller still listed in the v2
// root's cgroup.controllers makes crun refuse to start containers.
std::string controllers_left_on_hybrid_v2() {
  const fs::path root = "/sys/fs/cgroup";
  if (is_cgroup2(root) || !is_cgroup2(root / "unified")) return {};
  return trim(read_file(root / "unified" / "cgroup.controllers"));
}

template <class Ehdr, class Phdr>
std::optional<bool> has_interpreter(std::ifstream& in) {
  Ehdr header{};
  in.seekg(0);
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header)) return std::nullopt;
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Phdr program{};
    in.seekg(static_cast<std::streamoff>(header.e_phoff + i * header.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&program), sizeof program)) return std::nullopt;
    if (program.p_type == PT_INTERP) return true;
  }
  return false;
}

// nullopt when the file is not a readable ELF executable.
std::optional<bool> is_static_elf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char ident[EI_NIDENT] = {};
  if (!in.read(reinterpret_cast<char*>(ident), EI_NIDENT)) return std::nullopt;
  if (std::memcmp(ident, ELFMAG, SELFMAG) != 0) return std::nullopt;
  std::optional<bool> interp;
  if (ident[EI_CLASS] == ELFCLASS64) {
    interp = has_interpreter<Elf64_Ehdr, Elf64_Phdr>(in);
  } else if (ident[EI_CLASS] == ELFCLASS32) {
    interp = has_interpreter<Elf32_Ehdr, Elf32_Phdr>(in);
  }
  if (!interp) return std::nullopt;
  return !*interp;
}

fs::path busybox_path() {
  std::string found = have_tool("busybox");
  return found.empty() ? fs::path("/bin/busybox") : fs::path(found);
}

std::optional<std::string> missing_one(std::string_view need) {
  if (need == "root") {
    if (::geteuid() != 0) return "not running as root";
    return std::nullopt;
  }
  if (need == "runc" || need == "crun" || need == "bwrap") {
    if (have_tool(need).empty()) return std::string(need) + " is not installed (not in PATH)";
    if (need == "crun") {
      std::string left = controllers_left_on_hybrid_v2();
      if (!left.empty()) {
        return "crun 1.8 cannot start containers on this hybrid cgroup host while controllers (" +
               left + ") are on cgroup v2; run scripts/prepare-test-host.sh as root";
      }
    }
    return std::nullopt;
  }
  if (need == "podman") {
    // Rootful Podman runs its default runtime, crun here: crun's own needs too.
    if (have_tool("podman").empty()) return std::string("podman is not installed (not in PATH)");
    return missing_one("crun");
  }
  if (need == "containerd") {
    for (const char* tool : {"containerd", "ctr", "containerd-shim-runc-v2", "runc"})
      if (have_tool(tool).empty())
        return std::string(tool) + " is not installed (not in PATH; install containerd)";
    return std::nullopt;
  }
  if (need == "btf") {
    // The probes are CO-RE: without the kernel's BTF they cannot load.
    if (!fs::exists("/sys/kernel/btf/vmlinux"))
      return "the kernel has no BTF (/sys/kernel/btf/vmlinux)";
    return std::nullopt;
  }
  if (need == "busybox") {
    fs::path path = busybox_path();
    auto is_static = is_static_elf(path);
    if (!is_static)
      return "no busybox executable at " + path.string() + " (install busybox-static)";
    if (!*is_static) {
      return "busybox at " + path.string() +
             " is dynamically linked and cannot run in a bare rootfs (install busybox-static)";
    }
    return std::nullopt;
  }
  throw std::invalid_argument(
      "missing_requirement: unknown requirement \"" + std::string(need) +
      "\" (known: root, runc, crun, bwrap, busybox, btf, podman, containerd)");
}

fs::path make_bundle_dir() {
  fs::path base = ::geteuid() == 0 ? fs::path("/run/driftwatch-test") : fs::path("/var/tmp");
  fs::create_directories(base);
  std::string pattern = (base / "bundle-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("cannot create a bundle directory under " + base.string() + ": " +
                             std::strerror(errno));
  }
  // mkdtemp makes it 0700; with a user namespace the mapped root must be able
  // to search it or both runtimes fail with "permission denied".
  fs::permissions(pattern, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                               fs::perms::others_read | fs::perms::others_exec);
  return pattern;
}

void populate_rootfs(const fs::path& rootfs) {
  for (const char* dir : {"bin", "proc", "dev", "sys", "etc", "tmp", "root", "home/user"}) {
    fs::create_directories(rootfs / dir);
  }
  fs::permissions(rootfs / "tmp", fs::perms::all | fs::perms::sticky_bit);
  fs::permissions(rootfs / "root", fs::perms::owner_all);

  fs::path busybox = busybox_path();
  fs::copy_file(busybox, rootfs / "bin" / "busybox", fs::copy_options::overwrite_existing);
  fs::permissions(rootfs / "bin" / "busybox", fs::perms::owner_all | fs::perms::group_read |
                                                  fs::perms::group_exec | fs::perms::others_read |
                                                  fs::perms::others_exec);
  CommandResult list = run_command({busybox.string(), "--list"});
  if (list.exit_code != 0) {
    throw std::runtime_error(busybox.string() + " --list failed: " + list.err);
  }
  std::istringstream applets(list.out);
  for (std::string applet; applets >> applet;) {
    // "busybox" itself is in the list; a symlink would replace the binary.
    if (applet == "busybox" || applet.find('/') != std::string::npos) continue;
    fs::create_symlink("busybox", rootfs / "bin" / applet);
  }

  write_file(rootfs / "etc" / "passwd",
             "root:x:0:0:root:/root:/bin/sh\n"
             "user:x:1000:1000:user:/home/user:/bin/sh\n"
             "nobody:x:65534:65534:nobody:/:/bin/false\n");
  write_file(rootfs / "etc" / "group", "root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n");
}

std::vector<std::string> concat(std::vector<std::string> head,
                                const std::vector<std::string>& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

// Every container a runtime lists whose bundle is `dir`.
std::vector<std::string> containers_of_bundle(const std::string& runtime_path,
                                              const fs::path& dir) {
  std::vector<std::string> ids;
  CommandResult list = run_command({runtime_path, "list", "--format", "json"}, std::string(), 30s);
  if (list.exit_code != 0) return ids;
  auto parsed = nlohmann::json::parse(list.out, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return ids;  // runc prints "null" when there are none
  for (const auto& entry : parsed) {
    if (entry.value("bundle", std::string()) == dir.string()) {
      ids.push_back(entry.value("id", std::string()));
    }
  }
  return ids;
}

}  // namespace

std::optional<std::string> missing_requirement(std::initializer_list<std::string_view> needs) {
  std::string message;
  for (std::string_view need : needs) {
    if (auto why = missing_one(need)) {
      if (!message.empty()) message += "; ";
      message += *why;
    }
  }
  if (message.empty()) return std::nullopt;
  return message;
}

std::string unique_container_id(std::string_view label) {
  static std::atomic<int> counter{0};
  return "dwtest-" + std::string(label) + "-" + std::to_string(::getpid()) + "-" +
         std::to_string(++counter);
}

// ---- OciBundle --------------------------------------------------------------

OciBundle::OciBundle() : dir_(make_bundle_dir()) {
  try {
    populate_rootfs(rootfs());
  } catch (...) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
    throw;
  }
}

OciBundle OciBundle::with_default_spec() {
  OciBundle bundle;
  std::string runtime = have_tool("runc");
  if (runtime.empty()) runtime = have_tool("crun");
  if (runtime.empty()) {
    throw std::runtime_error(
        "cannot generate a default OCI spec: neither runc nor crun is in PATH");
  }
  CommandResult spec = run_command({runtime, "spec", "--bundle", bundle.dir().string()});
  if (spec.exit_code != 0) {
    throw std::runtime_error(runtime + " spec --bundle " + bundle.dir().string() +
                             " failed: " + spec.err);
  }
  bundle.config_ = nlohmann::json::parse(read_file(bundle.config_path()));
  bundle.config_["process"]["terminal"] = false;
  bundle.config_["process"]["args"] = {"sleep", "3600"};
  bundle.write_config();
  return bundle;
}

OciBundle OciBundle::without_capabilities() {
  OciBundle bundle = with_default_spec();
  auto& process = bundle.config_["process"];
  process["capabilities"] = {{"bounding", nlohmann::json::array()},
                             {"effective", nlohmann::json::array()},
                             {"permitted", nlohmann::json::array()},
                             {"inheritable", nlohmann::json::array()},
                             {"ambient", nlohmann::json::array()}};
  process["user"] = {{"uid", 1000}, {"gid", 1000}};
  bundle.write_config();
  return bundle;
}

void OciBundle::add_program(const std::filesystem::path& from, const std::string& name) const {
  std::filesystem::copy_file(from, rootfs() / "bin" / name,
                             std::filesystem::copy_options::overwrite_existing);
}

uint32_t Container::pid_namespace_inode() const {
  struct stat st {};
  const std::string path = "/proc/" + std::to_string(init_pid_) + "/ns/pid";
  if (::stat(path.c_str(), &st) != 0)
    throw std::runtime_error("cannot stat " + path + ": " + std::strerror(errno));
  return static_cast<uint32_t>(st.st_ino);
}

OciBundle::OciBundle(OciBundle&& other) noexcept
    : dir_(std::exchange(other.dir_, {})), config_(std::move(other.config_)) {}

OciBundle& OciBundle::operator=(OciBundle&& other) noexcept {
  if (this != &other) {
    OciBundle discarded(std::move(*this));
    dir_ = std::exchange(other.dir_, {});
    config_ = std::move(other.config_);
  }
  return *this;
}

OciBundle::~OciBundle() {
  if (dir_.empty()) return;
  // A container left running from this bundle would keep the rootfs busy.
  for (const char* runtime : {"runc", "crun"}) {
    try {
      std::string path = have_tool(runtime);
      if (path.empty()) continue;
      for (const auto& id : containers_of_bundle(path, dir_)) {
        run_command({path, "delete", "-f", id}, std::string(), 60s);
      }
    } catch (const std::exception& e) {
      std::cerr << "OciBundle: cannot check " << runtime << " containers of " << dir_ << ": "
                << e.what() << "\n";
    }
  }
  std::error_code error;
  fs::remove_all(dir_, error);
  if (error) std::cerr << "OciBundle: cannot remove " << dir_ << ": " << error.message() << "\n";
}

void OciBundle::write_config() const {
  write_file(config_path(), config_.dump(2) + "\n");
}

void OciBundle::enable_user_namespace(uint32_t host_id, uint32_t size) {
  auto& namespaces = config_["linux"]["namespaces"];
  bool present = false;
  for (const auto& ns : namespaces) present = present || ns.value("type", "") == "user";
  if (!present) namespaces.push_back({{"type", "user"}});
  nlohmann::json mapping =
      nlohmann::json::array({{{"containerID", 0}, {"hostID", host_id}, {"size", size}}});
  config_["linux"]["uidMappings"] = mapping;
  config_["linux"]["gidMappings"] = mapping;

  auto chown_one = [&](const fs::path& p) {
    if (::lchown(p.c_str(), host_id, host_id) != 0) {
      throw std::runtime_error("cannot chown " + p.string() + ": " + std::strerror(errno));
    }
  };
  chown_one(rootfs());
  for (const auto& entry : fs::recursive_directory_iterator(rootfs())) chown_one(entry.path());
  write_config();
}

// ---- Container --------------------------------------------------------------

Container::Container(std::string runtime, std::string runtime_path, std::string id,
                     fs::path bundle_dir)
    : runtime_(std::move(runtime)),
      runtime_path_(std::move(runtime_path)),
      id_(std::move(id)),
      bundle_dir_(std::move(bundle_dir)) {}

Result<Container> Container::start(std::string runtime, const OciBundle& bundle, std::string id) {
  std::string runtime_path = have_tool(runtime);
  if (runtime_path.empty()) {
    throw std::runtime_error("cannot start container " + id + ": " + runtime +
                             " is not in PATH (check missing_requirement first)");
  }
  const fs::path dir = bundle.dir();
  // Private stdio files; see the header on why neither a pipe nor /dev/null.
  const fs::path stdin_path = dir / (id + ".stdin");
  const fs::path log_path = dir / (id + ".log");
  write_file(stdin_path, "");

  // From here on the guard deletes the container whatever happens.
  Container container(runtime, runtime_path, id, dir);
  std::vector<std::string> argv = {runtime_path, "run", "-d", "--bundle", dir.string(), id};
  auto launcher = ChildProcess::start(argv, {.stdin_path = stdin_path, .output_path = log_path});
  auto status = launcher.wait_for(kRuntimeTimeout);
  if (!status) {
    launcher.kill();
    throw std::runtime_error("`" + describe_command(argv) +
                             "` did not return within 60 s; output: " + read_file(log_path));
  }
  if (*status != 0) {
    return fail(runtime, " run -d ", id, " (bundle ", dir.string(), ") failed with exit code ",
                std::to_string(*status), ": ", trim(read_file(log_path)));
  }

  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto state = container.state();
    if (!state) return std::unexpected(state.error());
    std::string status_text = state->value("status", "");
    if (status_text == "running") {
      container.init_pid_ = state->value("pid", -1);
      return container;
    }
    if (status_text == "stopped") {
      return fail("container ", id, " (", runtime,
                  ") stopped right after it started; output: ", trim(read_file(log_path)));
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      return fail("container ", id, " (", runtime, ") is still \"", status_text,
                  "\" 10 s after `run -d`; output: ", trim(read_file(log_path)));
    }
    std::this_thread::sleep_for(20ms);
  }
}

Container::Container(Container&& other) noexcept
    : runtime_(std::move(other.runtime_)),
      runtime_path_(std::move(other.runtime_path_)),
      id_(std::exchange(other.id_, {})),
      bundle_dir_(std::move(other.bundle_dir_)),
      init_pid_(other.init_pid_),
      exec_count_(other.exec_count_) {}

Container& Container::operator=(Container&& other) noexcept {
  if (this != &other) {
    remove();
    runtime_ = std::move(other.runtime_);
    runtime_path_ = std::move(other.runtime_path_);
    id_ = std::exchange(other.id_, {});
    bundle_dir_ = std::move(other.bundle_dir_);
    init_pid_ = other.init_pid_;
    exec_count_ = other.exec_count_;
  }
  return *this;
}

Container::~Container() {
  remove();
}

void Container::remove() noexcept {
  if (id_.empty()) return;
  try {
    run_command({runtime_path_, "delete", "-f", id_}, std::string(), kRuntimeTimeout);
  } catch (const std::exception& e) {
    std::cerr << "Container: " << runtime_ << " delete -f " << id_ << ": " << e.what() << "\n";
  }
  id_.clear();
}

Result<nlohmann::json> Container::state() const {
  // stdin is an empty pipe, not /dev/null: see the header.
  CommandResult result = run_command({runtime_path_, "state", id_}, std::string(), kRuntimeTimeout);
  if (result.exit_code != 0) {
    return fail(runtime_, " state ", id_, " failed: ", trim(result.err));
  }
  auto parsed = nlohmann::json::parse(result.out, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_object()) {
    throw std::runtime_error(runtime_ + " state " + id_ + " printed no JSON object: " + result.out);
  }
  return parsed;
}

Result<pid_t> Container::exec(const std::vector<std::string>& args,
                              const std::vector<std::string>& runtime_flags) {
  const int n = ++exec_count_;
  const fs::path pid_file = bundle_dir_ / (id_ + ".exec-" + std::to_string(n) + ".pid");
  const fs::path log_path = bundle_dir_ / (id_ + ".exec-" + std::to_string(n) + ".log");
  std::vector<std::string> argv =
      concat({runtime_path_, "exec", "-d", "--pid-file", pid_file.string()}, runtime_flags);
  argv.push_back(id_);
  argv = concat(std::move(argv), args);

  auto launcher = ChildProcess::start(
      argv, {.stdin_path = bundle_dir_ / (id_ + ".stdin"), .output_path = log_path});
  auto status = launcher.wait_for(kRuntimeTimeout);
  if (!status) {
    launcher.kill();
    throw std::runtime_error("`" + describe_command(argv) + "` did not return within 60 s");
  }
  if (*status != 0) {
    return fail("`", describe_command(argv), "` failed with exit code ", std::to_string(*status),
                ": ", trim(read_file(log_path)));
  }
  std::string pid_text = trim(read_file(pid_file));
  try {
    return static_cast<pid_t>(std::stoi(pid_text));
  } catch (const std::exception&) {
    return fail("`", describe_command(argv), "` wrote no pid to ", pid_file.string(), " (\"",
                pid_text, "\")");
  }
}

CommandResult Container::exec_wait(const std::vector<std::string>& args,
                                   const std::vector<std::string>& runtime_flags) const {
  std::vector<std::string> argv = concat({runtime_path_, "exec"}, runtime_flags);
  argv.push_back(id_);
  return run_command(concat(std::move(argv), args), std::string(), kRuntimeTimeout);
}

Result<void> Container::update(const std::vector<std::string>& flags) {
  std::vector<std::string> argv = concat({runtime_path_, "update"}, flags);
  argv.push_back(id_);
  CommandResult result = run_command(argv, std::string(), kRuntimeTimeout);
  if (result.exit_code != 0) {
    return fail("`", describe_command(argv), "` failed with exit code ",
                std::to_string(result.exit_code), ": ", trim(result.err));
  }
  return {};
}

std::string Container::log() const {
  return read_file(bundle_dir_ / (id_ + ".log"));
}

}  // namespace driftwatch::testing
