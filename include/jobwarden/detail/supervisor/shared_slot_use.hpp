#pragma once
/// \file
/// A supervisor's part in `SupervisorOptions::shared_slots` (shared_slots.hpp):
/// it joins the shared slots when its engine is made, takes a shared slot
/// for each worker it takes off its queue (after one of its own
/// `max_concurrency`), gives it back when the worker's process has exited
/// or could not be started, leaves the line when it has nothing to start,
/// and leaves for good when its engine goes. Touched under the engine's `mutex`.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "jobwarden/detail/event_loop.hpp"
#include "jobwarden/shared_slots.hpp"

namespace jobwarden::detail {

class SharedSlotMembership {
 public:
  SharedSlotMembership() = default;
  SharedSlotMembership(const SharedSlotMembership&) = delete;
  SharedSlotMembership& operator=(const SharedSlotMembership&) = delete;
  ~SharedSlotMembership() { leave(); }

  /// Joins `slots` (none: no shared limit); a freed slot wakes `loop`.
  void join(std::shared_ptr<SharedSlots> slots, EventLoop& loop) {
    slots_ = std::move(slots);
    if (slots_) member_ = slots_->join([&loop] { loop.wake(); });
  }

  /// Takes a shared slot for one worker: true with `slot` set (-1 when
  /// there is no shared limit), false when the supervisor must wait (it is
  /// in line and will be woken).
  bool take(int& slot) {
    slot = -1;
    if (!slots_) return true;
    slot = slots_->try_acquire(member_);
    if (slot < 0) return false;
    held_.push_back(slot);
    return true;
  }

  /// Gives back `slot` (-1: none) and clears it.
  void give_back(int& slot) {
    if (!slots_ || slot < 0) return;
    held_.erase(std::remove(held_.begin(), held_.end(), slot), held_.end());
    slots_->release(slot);
    slot = -1;
  }

  /// Nothing to start for now: out of the line.
  void withdraw() {
    if (slots_) slots_->withdraw(member_);
  }

  /// How soon a supervisor in line must look again without being woken.
  std::optional<std::chrono::milliseconds> retry_wait() const {
    if (!slots_ || !slots_->in_line(member_)) return std::nullopt;
    return slots_->retry_interval();
  }

  void leave() {
    if (!slots_) return;
    for (int slot : held_) slots_->release(slot);
    held_.clear();
    slots_->leave(member_);
    slots_.reset();
  }

 private:
  std::shared_ptr<SharedSlots> slots_;
  std::uint64_t member_ = 0;
  std::vector<int> held_;  // slots of workers launching or running
};

}  // namespace jobwarden::detail
