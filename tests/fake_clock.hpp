#pragma once
// A clock the test moves by hand, for deadlines and backoffs without sleeping.
#include <chrono>

namespace jwtest {
struct FakeClock {
  using duration = std::chrono::nanoseconds;
  using rep = duration::rep;
  using period = duration::period;
  using time_point = std::chrono::time_point<FakeClock>;
  static constexpr bool is_steady = true;
  static inline duration offset{std::chrono::hours(1)};
  static time_point now() { return time_point(offset); }
  static void advance(duration d) { offset += d; }
};
}  // namespace jwtest
