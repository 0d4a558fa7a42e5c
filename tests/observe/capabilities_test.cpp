#include "observe/capabilities.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#if __has_include(<linux/capability.h>)
#include <linux/capability.h>
#define DRIFTWATCH_HAVE_CAPABILITY_H 1
#endif

using Catch::Matchers::Contains;
using driftwatch::observe::capability_bit;
using driftwatch::observe::capability_mask;
using driftwatch::observe::capability_name;
using driftwatch::observe::capability_names;
using driftwatch::observe::kLastCapability;

TEST_CASE("capabilities: names bits as <linux/capability.h> does", "[observe]") {
  CHECK(capability_name(0) == "CAP_CHOWN");
  CHECK(capability_name(12) == "CAP_NET_ADMIN");
  CHECK(capability_name(21) == "CAP_SYS_ADMIN");
  CHECK(capability_name(39) == "CAP_BPF");
  CHECK(capability_name(40) == "CAP_CHECKPOINT_RESTORE");

#ifdef DRIFTWATCH_HAVE_CAPABILITY_H
  // Compare the table with the kernel header's own macros, name by name.
#define CAP_ENTRY(name) \
  { #name, name }
  const std::vector<std::pair<std::string, int>> header = {
      CAP_ENTRY(CAP_CHOWN),
      CAP_ENTRY(CAP_DAC_OVERRIDE),
      CAP_ENTRY(CAP_DAC_READ_SEARCH),
      CAP_ENTRY(CAP_FOWNER),
      CAP_ENTRY(CAP_FSETID),
      CAP_ENTRY(CAP_KILL),
      CAP_ENTRY(CAP_SETGID),
      CAP_ENTRY(CAP_SETUID),
      CAP_ENTRY(CAP_SETPCAP),
      CAP_ENTRY(CAP_LINUX_IMMUTABLE),
      CAP_ENTRY(CAP_NET_BIND_SERVICE),
      CAP_ENTRY(CAP_NET_BROADCAST),
      CAP_ENTRY(CAP_NET_ADMIN),
      CAP_ENTRY(CAP_NET_RAW),
      CAP_ENTRY(CAP_IPC_LOCK),
      CAP_ENTRY(CAP_IPC_OWNER),
      CAP_ENTRY(CAP_SYS_MODULE),
      CAP_ENTRY(CAP_SYS_RAWIO),
      CAP_ENTRY(CAP_SYS_CHROOT),
      CAP_ENTRY(CAP_SYS_PTRACE),
      CAP_ENTRY(CAP_SYS_PACCT),
      CAP_ENTRY(CAP_SYS_ADMIN),
      CAP_ENTRY(CAP_SYS_BOOT),
      CAP_ENTRY(CAP_SYS_NICE),
      CAP_ENTRY(CAP_SYS_RESOURCE),
      CAP_ENTRY(CAP_SYS_TIME),
      CAP_ENTRY(CAP_SYS_TTY_CONFIG),
      CAP_ENTRY(CAP_MKNOD),
      CAP_ENTRY(CAP_LEASE),
      CAP_ENTRY(CAP_AUDIT_WRITE),
      CAP_ENTRY(CAP_AUDIT_CONTROL),
      CAP_ENTRY(CAP_SETFCAP),
      CAP_ENTRY(CAP_MAC_OVERRIDE),
      CAP_ENTRY(CAP_MAC_ADMIN),
      CAP_ENTRY(CAP_SYSLOG),
      CAP_ENTRY(CAP_WAKE_ALARM),
      CAP_ENTRY(CAP_BLOCK_SUSPEND),
      CAP_ENTRY(CAP_AUDIT_READ),
      CAP_ENTRY(CAP_PERFMON),
      CAP_ENTRY(CAP_BPF),
      CAP_ENTRY(CAP_CHECKPOINT_RESTORE),
  };
#undef CAP_ENTRY
  REQUIRE(header.size() == kLastCapability + 1);
  CHECK(CAP_LAST_CAP >= kLastCapability);
  for (const auto& [name, bit] : header) {
    INFO(name << " = " << bit);
    CHECK(capability_name(bit) == name);
    CHECK(capability_bit(name) == bit);
  }
#else
  WARN("<linux/capability.h> is missing; checked only the spot values above");
#endif
}

TEST_CASE("capabilities: names a bit beyond the table by its number", "[observe]") {
  CHECK(capability_name(kLastCapability + 1) == "CAP_41");
  CHECK(capability_name(63) == "CAP_63");
  // Round-trips, so a mask from a newer kernel survives names -> mask.
  CHECK(capability_bit("CAP_41") == 41);
  CHECK(capability_bit("CAP_63") == 63);
  // Only beyond the table, within 64 bits, and in one spelling.
  CHECK_FALSE(capability_bit("CAP_21").has_value());
  CHECK_FALSE(capability_bit("CAP_64").has_value());
  CHECK_FALSE(capability_bit("CAP_041").has_value());
  CHECK_FALSE(capability_bit("CAP_41x").has_value());
  CHECK_FALSE(capability_bit("CAP_").has_value());
}

TEST_CASE("capabilities: bit lookup is case-sensitive and rejects unknown names", "[observe]") {
  CHECK(capability_bit("CAP_SYS_ADMIN") == 21);
  CHECK_FALSE(capability_bit("cap_sys_admin").has_value());
  CHECK_FALSE(capability_bit("SYS_ADMIN").has_value());
  CHECK_FALSE(capability_bit("CAP_SYS_ADMIN ").has_value());
  CHECK_FALSE(capability_bit("CAP_NOT_A_THING").has_value());
  CHECK_FALSE(capability_bit("").has_value());
}

TEST_CASE("capabilities: names of a mask come sorted by name", "[observe]") {
  CHECK(capability_names(0).empty());
  const uint64_t mask = (uint64_t{1} << 21) | (uint64_t{1} << 0) | (uint64_t{1} << 12);
  CHECK(capability_names(mask) ==
        std::vector<std::string>{"CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_ADMIN"});

  // Docker's default bounding set, as /proc/<pid>/status shows it.
  CHECK(capability_names(0x00000000a80425fb) ==
        std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                 "CAP_FSETID", "CAP_KILL", "CAP_MKNOD", "CAP_NET_BIND_SERVICE",
                                 "CAP_NET_RAW", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
                                 "CAP_SETUID", "CAP_SYS_CHROOT"});

  const std::vector<std::string> all = capability_names(~uint64_t{0});
  CHECK(all.size() == 64);
  CHECK(std::is_sorted(all.begin(), all.end()));
  CHECK(std::adjacent_find(all.begin(), all.end()) == all.end());
}

TEST_CASE("capabilities: a list of names becomes a mask and back", "[observe]") {
  const auto mask = capability_mask({"CAP_SYS_ADMIN", "CAP_CHOWN", "CAP_CHOWN", "CAP_BPF"});
  REQUIRE(mask.has_value());
  CHECK(*mask == ((uint64_t{1} << 21) | (uint64_t{1} << 0) | (uint64_t{1} << 39)));
  CHECK(capability_mask({}) == uint64_t{0});

  for (const uint64_t sample :
       {uint64_t{0x000001ffffffffff}, uint64_t{0xa80425fb}, ~uint64_t{0}, uint64_t{1} << 63}) {
    INFO("mask " << std::hex << sample);
    CHECK(capability_mask(capability_names(sample)) == sample);
  }
}

TEST_CASE("capabilities: an unknown name in a list is an error naming it", "[observe]") {
  const auto mask = capability_mask({"CAP_CHOWN", "CAP_SYS_ADNIM"});
  REQUIRE_FALSE(mask.has_value());
  CHECK_THAT(mask.error().message, Contains("\"CAP_SYS_ADNIM\"") && Contains("unknown"));
  CHECK_FALSE(capability_mask({"sys_admin"}).has_value());
}
