#include "parallel.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#define FM_HAVE_GETPID 1
#endif

namespace flickermine {
namespace {

int available_cores() {
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? static_cast<int>(n) : 1;
}

// The default leaves one core to the decoder (and detector) that feed the miner: on a 2-core
// machine a second rule thread only competes with decoding (bench_pipeline.py measured the
// tracklet rule 15% slower with it, the support rule 10% faster).
int default_threads() { return std::max(available_cores() - 1, 1); }

std::atomic<int>& thread_setting() {
  static std::atomic<int> setting{default_threads()};
  return setting;
}

// One parallel_for call: lives on its caller's stack. Workers join it under the pool's lock
// while it is the current job and leave it under the same lock; the caller withdraws it and
// waits for `active` to reach zero before returning, so no worker touches it afterwards.
struct Job {
  const std::function<void(std::size_t)>* body;
  std::size_t n;
  std::atomic<std::size_t> next{0};
  int active = 0;  // workers inside run(), guarded by the pool's lock
  std::mutex error_lock;
  std::exception_ptr error;

  void run() {
    for (std::size_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) {
      try {
        (*body)(i);
      } catch (...) {
        std::lock_guard<std::mutex> guard(error_lock);
        if (!error) error = std::current_exception();
        next.store(n, std::memory_order_relaxed);  // start nothing more
      }
    }
  }
};

class Pool {
 public:
  // Never destroyed (see pool()): workers sleep on the condition variable until the process ends.
  // A thread the system refuses (std::system_error) is simply not there: the pool runs with those
  // it got, down to none (every job then runs on its caller).
  explicit Pool(int workers) : requested_(workers) {
    threads_.reserve(static_cast<std::size_t>(workers));
    for (int k = 0; k < workers; ++k) {
      try {
        threads_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {
        break;
      }
    }
    for (std::thread& t : threads_) t.detach();
  }

  int requested() const { return requested_; }

  // Runs `job` on the caller and on up to `helpers` workers. False (nothing run) while another
  // caller's job is running, or without workers: the caller then runs its items alone.
  bool run(Job& job, int helpers) {
    if (threads_.empty()) return false;
    std::unique_lock<std::mutex> busy(run_lock_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> guard(lock_);
      current_ = &job;
      helpers_wanted_ = helpers;
      ++generation_;
    }
    wake_.notify_all();
    job.run();
    std::unique_lock<std::mutex> guard(lock_);
    current_ = nullptr;  // late workers find no job
    done_.wait(guard, [&job] { return job.active == 0; });
    return true;
  }

 private:
  void work() {
    std::unique_lock<std::mutex> guard(lock_);
    unsigned long long seen = generation_;
    for (;;) {
      wake_.wait(guard, [&] { return generation_ != seen; });
      seen = generation_;
      Job* job = current_;
      if (job == nullptr || helpers_wanted_ <= 0) continue;
      --helpers_wanted_;
      ++job->active;
      guard.unlock();
      job->run();
      guard.lock();
      if (--job->active == 0) done_.notify_all();
    }
  }

  const int requested_;
  std::vector<std::thread> threads_;
  std::mutex run_lock_;  // one job at a time
  std::mutex lock_;      // guards everything below and Job::active
  std::condition_variable wake_, done_;
  Job* current_ = nullptr;
  int helpers_wanted_ = 0;
  unsigned long long generation_ = 0;
};

// The process's pool, grown to `workers` threads when asked for more. A child made by fork()
// has none of its parent's threads: it makes its own pool (the parent's copy is left alone).
Pool* pool(int workers) {
  static std::mutex lock;
  static Pool* current = nullptr;
#ifdef FM_HAVE_GETPID
  static pid_t owner = 0;
#endif
  std::lock_guard<std::mutex> guard(lock);
#ifdef FM_HAVE_GETPID
  if (owner != getpid()) {
    current = nullptr;
    owner = getpid();
  }
#endif
  // Pools are never freed: a worker of a replaced pool may still be waking up (it finds no job).
  if (current == nullptr || current->requested() < workers) current = new Pool(workers);
  return current;
}

}  // namespace

void set_num_threads(int n) {
  thread_setting().store(n > 0 ? std::min(n, kMaxThreads) : default_threads(), std::memory_order_relaxed);
}

int num_threads() { return thread_setting().load(std::memory_order_relaxed); }

void parallel_for(std::size_t n, const std::function<void(std::size_t)>& body) {
  Job job;
  job.body = &body;
  job.n = n;
  const int helpers = static_cast<int>(std::min<std::size_t>(n, static_cast<std::size_t>(num_threads()))) - 1;
  if (helpers <= 0 || !pool(std::max(helpers, num_threads() - 1))->run(job, helpers)) job.run();
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace flickermine
