#pragma once
/// \file
/// The queue of workers waiting for a slot, in the order they start: the
/// highest `WorkerSpec::priority` first, and among equal priorities the one
/// queued first (FIFO). A worker keeps its place number (`queue_seq`) for
/// good, so a restart that comes back from its backoff goes where its
/// submission put it: ahead of the workers of its priority submitted after
/// it. Pushing, popping and removing cost O(log n), whatever the mix of
/// priorities (a job may queue tens of thousands of workers).
/// Touched only under the engine's `mutex`.

#include <cstddef>
#include <cstdint>
#include <set>

namespace jobwarden::detail {

template <class Record>
class LaunchQueue {
 public:
  /// Queues `record`; a record queued before keeps its place number.
  void push(Record* record) {
    if (record->queue_seq == 0) record->queue_seq = ++last_seq_;
    entries_.insert(key_of(record));
  }

  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }

  /// Takes the worker that starts next off the queue. Not on an empty queue.
  Record* pop() {
    auto first = entries_.begin();
    Record* record = first->record;
    entries_.erase(first);
    return record;
  }

  /// Takes `record` off the queue, if it is on it.
  void erase(Record* record) {
    if (record->queue_seq != 0) entries_.erase(key_of(record));
  }

  void clear() { entries_.clear(); }

 private:
  struct Key {
    int priority;
    std::uint64_t seq;
    Record* record;
    bool operator<(const Key& other) const {
      if (priority != other.priority) return priority > other.priority;  // higher first
      return seq < other.seq;                                             // then FIFO
    }
  };

  static Key key_of(Record* record) { return Key{record->spec.priority, record->queue_seq, record}; }

  std::set<Key> entries_;
  std::uint64_t last_seq_ = 0;
};

}  // namespace jobwarden::detail
