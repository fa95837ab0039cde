#include "engine/queue_pair.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "base/log.hpp"

namespace vfe::engine {

const char* to_string(CompletionMode mode) noexcept {
  switch (mode) {
    case CompletionMode::polling: return "polling";
    case CompletionMode::interrupt: return "interrupt";
    case CompletionMode::adaptive: return "adaptive";
  }
  return "?";
}

std::optional<CompletionMode> parse_completion_mode(std::string_view name) noexcept {
  if (name == "polling" || name == "poll") {
    return CompletionMode::polling;
  }
  if (name == "interrupt" || name == "irq") {
    return CompletionMode::interrupt;
  }
  if (name == "adaptive") {
    return CompletionMode::adaptive;
  }
  return std::nullopt;
}

WorkerMode worker_mode_for(CompletionMode mode) noexcept {
  switch (mode) {
    case CompletionMode::polling: return WorkerMode::polling;
    case CompletionMode::interrupt: return WorkerMode::interrupt;
    case CompletionMode::adaptive: return WorkerMode::adaptive;
  }
  return WorkerMode::adaptive;
}

QueuePair::QueuePair(std::size_t submission_capacity) : submissions_(submission_capacity) {}

QueuePair::~QueuePair() {
  if (worker_ != nullptr) {
    if (auto r = detach(); !r) {
      log_error("queue pair detach: {}", r.error().message());
    }
  }
}

bool QueuePair::try_submit(Request* req) noexcept {
  if (!submissions_.try_push(req)) {
    return false;
  }
  // A completion callback that submits again runs on the worker, which is awake: no wakeup.
  if (worker_ != nullptr && !worker_->on_worker_thread()) {
    worker_->notify();
  }
  return true;
}

std::size_t QueuePair::submit_bulk(std::span<Request* const> reqs) noexcept {
  const std::size_t n = submissions_.push_bulk(reqs);
  if (n != 0 && worker_ != nullptr && !worker_->on_worker_thread()) {
    worker_->notify();
  }
  return n;
}

Result<void> QueuePair::attach(Worker& worker, CompletionMode mode, int irq_eventfd) {
  if (worker_ != nullptr) {
    return Error::invalid("attach queue pair", "it is already attached to a worker");
  }
  if (mode != CompletionMode::polling && irq_eventfd < 0) {
    return Error::invalid("attach queue pair",
                          fmt::format("{} completion needs the vector's eventfd", to_string(mode)));
  }
  mode_ = mode;
  if (mode != CompletionMode::polling) {
    VFE_TRY(worker.watch(irq_eventfd, [this](std::uint64_t) { reap_completions(); }));
    irq_fd_ = irq_eventfd;
  }
  if (auto r = worker.add(*this); !r) {
    if (irq_fd_ >= 0) {
      static_cast<void>(worker.unwatch(irq_fd_));
      irq_fd_ = -1;
    }
    return r;
  }
  worker_ = &worker;
  return ok();
}

Result<void> QueuePair::detach() {
  if (worker_ == nullptr) {
    return Error::invalid("detach queue pair", "it is not attached");
  }
  VFE_TRY(worker_->remove(*this));
  if (irq_fd_ >= 0) {
    VFE_TRY(worker_->unwatch(irq_fd_));
    irq_fd_ = -1;
  }
  worker_ = nullptr;
  return ok();
}

void QueuePair::drain_waiting(void (*fn)(Request* req, void* ctx) noexcept, void* ctx) noexcept {
  for (std::size_t i = 0; i < held_.count; ++i) {
    fn(held_.items[i], ctx);
  }
  held_.count = 0;
  Request* req = nullptr;
  while (submissions_.try_pop(req)) {
    fn(req, ctx);
  }
}

std::size_t QueuePair::poll() noexcept {
  std::size_t work = 0;
  // Offer what the device did not take last time first, so the order of submission holds.
  if (held_.count < kBatch) {
    held_.count += submissions_.pop_bulk(std::span<Request*>(held_.items + held_.count, kBatch - held_.count));
  }
  if (held_.count != 0) {
    const std::size_t taken = submit_to_device(std::span<Request*>(held_.items, held_.count));
    std::move(held_.items + taken, held_.items + held_.count, held_.items);
    held_.count -= taken;
    work += taken;
  }
  if (mode_ != CompletionMode::interrupt) {
    work += reap_completions();
  }
  return work;
}

}  // namespace vfe::engine
