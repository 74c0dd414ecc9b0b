// The CPU execution harness's scheduler: runs one kernel launch, a grid of blocks of threads,
// on the host. Blocks go to a small pool of OS threads (the caller's included); within a
// block every CUDA thread is a fiber with its own stack, and the block's fibers run in turn,
// each until its next `__syncthreads()` or its end, so that no thread passes a barrier before
// all have reached it. Switching fibers is a few instructions on x86-64 (the callee-saved
// registers and the stack pointer; below), and ucontext elsewhere.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "cuda_emu.h"
#include "runtime.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace simattr_emu {

thread_local uint3 thread_index;
thread_local uint3 block_index;
thread_local dim3 block_shape;
thread_local dim3 grid_shape;

namespace {

constexpr std::size_t STACK_BYTES = 64 * 1024;

#if defined(__x86_64__)
// simattr_emu_switch(save, load): pushes the callee-saved registers on the current stack,
// stores its stack pointer in *save, and resumes the context whose stack pointer is `load`
// (saved the same way, or laid out by start_stack). The SSE and x87 control words are not
// switched: no kernel changes rounding modes, and loading them (fldcw serialises) was a
// third of the switch's cost. The 8-byte slot they would take keeps the layout aligned.
extern "C" void simattr_emu_switch(void** save, void* load);
asm(R"(
    .text
    .globl simattr_emu_switch
    .type simattr_emu_switch, @function
simattr_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size simattr_emu_switch, .-simattr_emu_switch
)");

struct Context {
  void* sp = nullptr;
};

void fiber_main();

// A fresh fiber's stack as simattr_emu_switch expects to find it: the alignment slot, six
// registers, then fiber_main as the return address, aligned so that fiber_main starts as if
// called (its stack pointer ≡ 8 mod 16).
void start_stack(Context& context, char* stack) {
  auto top = reinterpret_cast<std::uintptr_t>(stack + STACK_BYTES) & ~std::uintptr_t(15);
  auto* words = reinterpret_cast<std::uint64_t*>(top - 72);
  for (int r = 0; r <= 6; r++) {
    words[r] = 0;
  }
  words[7] = reinterpret_cast<std::uint64_t>(&fiber_main);
  words[8] = 0;
  context.sp = words;
}

void switch_to(Context& from, Context& to) { simattr_emu_switch(&from.sp, to.sp); }
#else
struct Context {
  ucontext_t uc;
};

void fiber_main();

void start_stack(Context& context, char* stack) {
  getcontext(&context.uc);
  context.uc.uc_stack.ss_sp = stack;
  context.uc.uc_stack.ss_size = STACK_BYTES;
  context.uc.uc_link = nullptr;
  makecontext(&context.uc, fiber_main, 0);
}

void switch_to(Context& from, Context& to) { swapcontext(&from.uc, &to.uc); }
#endif

struct Launch {
  Invoke invoke;
  void* const* args;
  dim3 grid;
  dim3 block;
  std::atomic<unsigned> next_block{0};
  unsigned blocks;
};

// One OS thread's state: the fibers of the block it runs, reused from block to block.
struct Worker {
  Context scheduler;
  std::vector<Context> fibers;
  std::vector<std::unique_ptr<char[]>> stacks;
  std::vector<char> done;
  unsigned current = 0;
  const Launch* launch = nullptr;

  void run_block(const Launch& l, unsigned flat) {
    const unsigned threads = l.block.x * l.block.y * l.block.z;
    while (stacks.size() < threads) {
      stacks.emplace_back(new char[STACK_BYTES]);
    }
    fibers.resize(threads);
    done.assign(threads, 0);
    launch = &l;
    block_index = {flat % l.grid.x, (flat / l.grid.x) % l.grid.y, flat / (l.grid.x * l.grid.y)};
    for (unsigned t = 0; t < threads; t++) {
      start_stack(fibers[t], stacks[t].get());
    }
    unsigned remaining = threads;
    while (remaining > 0) {
      for (unsigned t = 0; t < threads; t++) {
        if (done[t]) {
          continue;
        }
        current = t;
        thread_index = {t % l.block.x, (t / l.block.x) % l.block.y, t / (l.block.x * l.block.y)};
        switch_to(scheduler, fibers[t]);
        if (done[t]) {
          remaining--;
        }
      }
    }
  }
};

thread_local Worker worker;

void fiber_main() {
  worker.launch->invoke(worker.launch->args);
  worker.done[worker.current] = 1;
  switch_to(worker.fibers[worker.current], worker.scheduler);
  std::abort();  // a finished fiber is never resumed
}

void run_blocks(Launch& launch) {
  block_shape = launch.block;
  grid_shape = launch.grid;
  for (unsigned b = launch.next_block++; b < launch.blocks; b = launch.next_block++) {
    worker.run_block(launch, b);
  }
}

// Threads that help the caller with the blocks of each launch.
class Pool {
 public:
  Pool() {
    unsigned helpers = std::max(1u, std::thread::hardware_concurrency()) - 1;
    if (const char* configured = std::getenv("SIMATTR_EMU_THREADS")) {
      helpers = unsigned(std::max(1, std::atoi(configured))) - 1;
    }
    for (unsigned h = 0; h < helpers; h++) {
      threads_.emplace_back([this] { serve(); });
    }
  }

  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) {
      t.join();
    }
  }

  void run(Launch& launch) {
    if (threads_.empty() || launch.blocks == 1) {
      run_blocks(launch);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      launch_ = &launch;
      busy_ = unsigned(threads_.size());
      generation_++;
    }
    wake_.notify_all();
    run_blocks(launch);
    std::unique_lock<std::mutex> lock(mutex_);
    finished_.wait(lock, [this] { return busy_ == 0; });
    launch_ = nullptr;
  }

 private:
  void serve() {
    std::uint64_t seen = 0;
    for (;;) {
      Launch* launch;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) {
          return;
        }
        seen = generation_;
        launch = launch_;
      }
      run_blocks(*launch);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        busy_--;
      }
      finished_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  Launch* launch_ = nullptr;
  std::uint64_t generation_ = 0;
  unsigned busy_ = 0;
  bool stopping_ = false;
};

}  // namespace

void barrier() {
  switch_to(worker.fibers[worker.current], worker.scheduler);
}

void launch(Invoke invoke, void* const* args, const unsigned grid[3], const unsigned block[3]) {
  static Pool pool;
  // One launch at a time (callers on several threads, as tests are, take turns), each spread
  // over the whole pool.
  static std::mutex one_at_a_time;
  std::lock_guard<std::mutex> turn(one_at_a_time);
  Launch l;
  l.invoke = invoke;
  l.args = args;
  l.grid = {grid[0], grid[1], grid[2]};
  l.block = {block[0], block[1], block[2]};
  l.blocks = grid[0] * grid[1] * grid[2];
  pool.run(l);
}

}  // namespace simattr_emu
