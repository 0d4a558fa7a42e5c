#include "app/runtime_setup.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace {

using driftwatch::Result;
using driftwatch::app::in_runtime_setup;
using driftwatch::app::monotonic_ns;
using driftwatch::app::settle;
using driftwatch::correlate::SweepItem;
using namespace std::chrono_literals;

SweepItem item_named(std::vector<std::string> names) {
  SweepItem item;
  pid_t pid = 100;
  for (auto& name : names) {
    driftwatch::projection::MemberObservation member;
    member.pid = pid++;
    member.status.name = std::move(name);
    item.observation.members.push_back(std::move(member));
  }
  return item;
}

}  // namespace

TEST_CASE("runtime setup: runc's and crun's own processes are told by name", "[app]") {
  CHECK(in_runtime_setup(item_named({"sh", "runc:[2:INIT]"})));
  CHECK(in_runtime_setup(item_named({"runc:[1:CHILD]"})));
  CHECK(in_runtime_setup(item_named({"crun"})));
  CHECK_FALSE(in_runtime_setup(item_named({"sh", "sleep"})));
  CHECK_FALSE(in_runtime_setup(item_named({"runc"})));  // the CLI's name, never inside
  CHECK_FALSE(in_runtime_setup(item_named({"crun-agent"})));
  CHECK_FALSE(in_runtime_setup(item_named({})));
}

TEST_CASE(
    "runtime setup: settle samples again until the setup is over, and says when it last saw it",
    "[app]") {
  int calls = 0;
  std::vector<uint64_t> starts;
  auto sample = [&]() -> Result<SweepItem> {
    starts.push_back(monotonic_ns());
    ++calls;
    return item_named({calls < 3 ? "runc:[2:INIT]" : "agent"});
  };
  auto budget = std::chrono::milliseconds(1000);
  uint64_t seen = 0;
  auto item = settle(sample, budget, &seen, 2ms);
  REQUIRE(item);
  CHECK(item->observation.members.at(0).status.name == "agent");
  CHECK(calls == 3);
  CHECK(budget == 996ms);
  // The second sample was the last to see the setup: `seen` is when it began
  // (no later than its own clock read, no earlier than the first's).
  REQUIRE(starts.size() == 3);
  CHECK(seen > starts[0]);
  CHECK(seen <= starts[1]);
}

TEST_CASE(
    "runtime setup: settle leaves the time alone when no setup was seen, and stops at the budget",
    "[app]") {
  auto budget = std::chrono::milliseconds(1000);
  uint64_t seen = 0;
  auto clean = settle([] { return Result<SweepItem>(item_named({"agent"})); }, budget, &seen, 1ms);
  REQUIRE(clean);
  CHECK(seen == 0);
  CHECK(budget == 1000ms);

  int calls = 0;
  auto short_budget = std::chrono::milliseconds(3);
  auto stuck = settle(
      [&] {
        ++calls;
        return Result<SweepItem>(item_named({"crun"}));
      },
      short_budget, &seen, 1ms);
  REQUIRE(stuck);
  CHECK(in_runtime_setup(*stuck));  // judged as it is once the budget is spent
  CHECK(calls == 4);
  CHECK(short_budget == 0ms);
  CHECK(seen != 0);
}

TEST_CASE(
    "runtime setup: a sample with an exiting member is taken again, without moving the "
    "latency origin",
    "[app]") {
  int calls = 0;
  auto sample = [&]() -> Result<SweepItem> {
    auto item = item_named({"agent", "true"});
    item.observation.members.at(1).exiting = ++calls < 3;
    return item;
  };
  CHECK_FALSE(driftwatch::app::member_exiting(item_named({"agent"})));
  auto budget = std::chrono::milliseconds(1000);
  uint64_t seen = 0;
  auto item = settle(sample, budget, &seen, 1ms);
  REQUIRE(item);
  CHECK(calls == 3);
  CHECK_FALSE(driftwatch::app::in_transition(*item));
  CHECK(budget == 998ms);
  CHECK(seen == 0);  // an exit is not the runtime's setup

  // One that stays exiting (a leader thread gone, its threads running) is
  // judged as it is once the budget is spent.
  auto short_budget = std::chrono::milliseconds(2);
  auto stuck = settle(
      [] {
        auto item = item_named({"agent"});
        item.observation.members.at(0).exiting = true;
        return Result<SweepItem>(std::move(item));
      },
      short_budget, &seen, 1ms);
  REQUIRE(stuck);
  CHECK(driftwatch::app::member_exiting(*stuck));
  CHECK(short_budget == 0ms);
}
