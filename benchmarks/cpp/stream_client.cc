// Benchmark client for the echo.Echo service (gRPC C++ callback API).
//
//   stream_client --mode MODE --target HOST:PORT [options]
//
// Modes:
//   check          one call of each method; verifies the echoed data.
//   server-stream  ServerStream calls of --messages messages of --size bytes each,
//                  --concurrency calls at a time, for --duration seconds.
//   bidi           Bidi calls doing --messages ping-pong round trips of --size
//                  bytes each, --concurrency calls at a time, for --duration s.
//   hold           opens --streams Bidi streams (one round trip each, so every
//                  stream reaches the backend), prints {"event":"ready",...} and
//                  keeps them open until a line (or EOF) arrives on stdin or
//                  --duration seconds pass, then closes them.
// Streams are spread over --channels HTTP/2 connections.  The result is one
// JSON object on the last line of stdout; the exit status is 0 when no call
// failed.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"

namespace {

using echo::Echo;
using echo::Msg;
using grpc::ClientContext;
using grpc::Status;
using Clock = std::chrono::steady_clock;

constexpr auto kCallTimeout = std::chrono::seconds(120);

struct Options {
  std::string mode;
  std::string target;
  double duration = 5.0;
  int concurrency = 10;
  int channels = 1;
  int messages = 100;
  int size = 1024;
  int streams = 1000;
};

double Micros(Clock::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}

// Counts down to zero; waiters give up after a timeout.
class Latch {
 public:
  explicit Latch(int count) : count_(count) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--count_ <= 0) cv_.notify_all();
  }
  bool WaitFor(std::chrono::duration<double> timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [this] { return count_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int count_;
};

// Results of one sequence of calls; merged when all sequences are done.
struct Stats {
  std::vector<double> latencies_us;
  int64_t calls = 0;
  int64_t messages = 0;
  int64_t errors = 0;
  std::string first_error;

  void Fail(const std::string& why) {
    ++errors;
    if (first_error.empty()) first_error = why;
  }
  void Merge(const Stats& other) {
    latencies_us.insert(latencies_us.end(), other.latencies_us.begin(),
                        other.latencies_us.end());
    calls += other.calls;
    messages += other.messages;
    errors += other.errors;
    if (first_error.empty()) first_error = other.first_error;
  }
};

std::string StatusText(const Status& status) {
  return "status " + std::to_string(status.error_code()) + ": " + status.error_message();
}

std::string JsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::vector<std::unique_ptr<Echo::Stub>> MakeStubs(const Options& opt) {
  std::vector<std::unique_ptr<Echo::Stub>> stubs;
  for (int i = 0; i < std::max(1, opt.channels); ++i) {
    grpc::ChannelArguments args;
    // A private subchannel pool and a distinct argument give every channel
    // its own TCP connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("bench.channel_index", i);
    args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 64 * 1024 * 1024);
    auto channel =
        grpc::CreateCustomChannel(opt.target, grpc::InsecureChannelCredentials(), args);
    stubs.push_back(Echo::NewStub(channel));
  }
  return stubs;
}

void SetDeadline(ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + kCallTimeout);
}

// ---------------------------------------------------------------------------
// Load modes: each Sequence runs one call at a time until the deadline.

struct LoadConfig {
  Msg request;
  int messages = 0;
  Clock::time_point deadline;
};

class Sequence {
 public:
  Sequence(Echo::Stub* stub, const LoadConfig* config, Latch* done)
      : stub_(stub), config_(config), done_(done) {}
  virtual ~Sequence() = default;

  void Next() {
    if (Clock::now() >= config_->deadline) {
      done_->CountDown();
      return;
    }
    StartOne();
  }
  Stats stats;

 protected:
  virtual void StartOne() = 0;
  Echo::Stub* stub_;
  const LoadConfig* config_;

 private:
  Latch* done_;
};

// One ServerStream call; latency is the time until the last message and status.
class ServerStreamCall final : public grpc::ClientReadReactor<Msg> {
 public:
  ServerStreamCall(Sequence* seq, Echo::Stub* stub, const LoadConfig* config)
      : seq_(seq),
        expected_(config->messages),
        expected_size_(config->request.payload().size()),
        start_(Clock::now()) {
    SetDeadline(&ctx_);
    stub->async()->ServerStream(&ctx_, &config->request, this);
    StartRead(&reply_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    ++received_;
    if (reply_.payload().size() != expected_size_) bad_payload_ = true;
    StartRead(&reply_);
  }
  void OnDone(const Status& status) override {
    Stats& stats = seq_->stats;
    ++stats.calls;
    stats.messages += received_;
    if (!status.ok()) {
      stats.Fail(StatusText(status));
    } else if (received_ != expected_ || bad_payload_) {
      stats.Fail("server-stream: got " + std::to_string(received_) + " messages, want " +
                 std::to_string(expected_));
    } else {
      stats.latencies_us.push_back(Micros(Clock::now() - start_));
    }
    Sequence* seq = seq_;
    delete this;
    seq->Next();
  }

 private:
  Sequence* seq_;
  ClientContext ctx_;
  Msg reply_;
  int expected_;
  size_t expected_size_;
  int received_ = 0;
  bool bad_payload_ = false;
  Clock::time_point start_;
};

class ServerStreamSequence final : public Sequence {
 public:
  using Sequence::Sequence;

 protected:
  void StartOne() override {
    auto* call = new ServerStreamCall(this, stub_, config_);
    (void)call;
  }
};

// One Bidi call doing ping-pong round trips; latency is per round trip.
class PingPongCall final : public grpc::ClientBidiReactor<Msg, Msg> {
 public:
  PingPongCall(Sequence* seq, Echo::Stub* stub, const LoadConfig* config)
      : seq_(seq), request_(config->request), rounds_wanted_(config->messages) {
    SetDeadline(&ctx_);
    stub->async()->Bidi(&ctx_, this);
    if (rounds_wanted_ > 0) {
      StartRound();
    } else {
      StartWritesDone();
    }
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) failed_ = true;
    EndStep();
  }
  void OnReadDone(bool ok) override {
    if (ok && reply_.payload() == request_.payload()) {
      round_latencies_.push_back(Micros(Clock::now() - sent_at_));
      ++rounds_done_;
    } else {
      failed_ = true;
    }
    EndStep();
  }
  void OnDone(const Status& status) override {
    Stats& stats = seq_->stats;
    ++stats.calls;
    stats.messages += rounds_done_;
    stats.latencies_us.insert(stats.latencies_us.end(), round_latencies_.begin(),
                              round_latencies_.end());
    if (!status.ok()) {
      stats.Fail(StatusText(status));
    } else if (rounds_done_ != rounds_wanted_) {
      stats.Fail("bidi: " + std::to_string(rounds_done_) + " round trips, want " +
                 std::to_string(rounds_wanted_));
    }
    Sequence* seq = seq_;
    delete this;
    seq->Next();
  }

 private:
  void StartRound() {
    pending_.store(2);
    sent_at_ = Clock::now();
    StartWrite(&request_);
    StartRead(&reply_);
  }
  // Both the write and the read of a round must finish before the next round.
  void EndStep() {
    if (pending_.fetch_sub(1) != 1) return;
    if (failed_) {
      ctx_.TryCancel();
    } else if (rounds_done_ < rounds_wanted_) {
      StartRound();
    } else {
      StartWritesDone();
    }
  }

  Sequence* seq_;
  ClientContext ctx_;
  Msg request_;
  Msg reply_;
  int rounds_wanted_;
  int rounds_done_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<bool> failed_{false};
  Clock::time_point sent_at_;
  std::vector<double> round_latencies_;
};

class PingPongSequence final : public Sequence {
 public:
  using Sequence::Sequence;

 protected:
  void StartOne() override {
    auto* call = new PingPongCall(this, stub_, config_);
    (void)call;
  }
};

double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0.0;
  size_t idx = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[std::min(idx, sorted.size() - 1)];
}

std::string LatencyJson(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  double sum = 0;
  for (double v : us) sum += v;
  std::ostringstream out;
  out << "{\"count\":" << us.size() << ",\"mean\":" << (us.empty() ? 0 : sum / us.size() / 1000)
      << ",\"p50\":" << Percentile(us, 50) / 1000 << ",\"p90\":" << Percentile(us, 90) / 1000
      << ",\"p99\":" << Percentile(us, 99) / 1000
      << ",\"max\":" << (us.empty() ? 0 : us.back() / 1000) << "}";
  return out.str();
}

template <typename Seq>
int RunLoad(const Options& opt) {
  auto stubs = MakeStubs(opt);
  LoadConfig config;
  config.request.set_payload(std::string(opt.size, 'x'));
  config.request.set_count(opt.messages);
  config.messages = opt.messages;
  const int n = std::max(1, opt.concurrency);
  Latch done(n);
  std::vector<std::unique_ptr<Seq>> seqs;
  for (int i = 0; i < n; ++i) {
    seqs.push_back(std::make_unique<Seq>(stubs[i % stubs.size()].get(), &config, &done));
  }
  const auto start = Clock::now();
  config.deadline = start + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(opt.duration));
  for (auto& s : seqs) s->Next();
  if (!done.WaitFor(std::chrono::duration<double>(opt.duration) + kCallTimeout)) {
    std::printf("{\"mode\":\"%s\",\"error\":\"timed out\"}\n", opt.mode.c_str());
    std::fflush(stdout);
    std::_Exit(1);
  }
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  Stats total;
  for (auto& s : seqs) total.Merge(s->stats);
  std::printf(
      "{\"mode\":\"%s\",\"elapsed_s\":%.4f,\"calls\":%lld,\"messages\":%lld,\"errors\":%lld,"
      "\"first_error\":\"%s\",\"calls_per_s\":%.2f,\"messages_per_s\":%.2f,\"latency_ms\":%s}\n",
      opt.mode.c_str(), elapsed, static_cast<long long>(total.calls),
      static_cast<long long>(total.messages), static_cast<long long>(total.errors),
      JsonEscape(total.first_error).c_str(), total.calls / elapsed, total.messages / elapsed,
      LatencyJson(total.latencies_us).c_str());
  std::fflush(stdout);
  return total.errors == 0 ? 0 : 1;
}

// ---------------------------------------------------------------------------
// check: one blocking call of each method.

std::string CheckUnary(Echo::Stub* stub, const Msg& req) {
  ClientContext ctx;
  SetDeadline(&ctx);
  Msg reply;
  Status s = stub->Unary(&ctx, req, &reply);
  if (!s.ok()) return "Unary: " + StatusText(s);
  if (reply.payload() != req.payload()) return "Unary: payload mismatch";
  return "";
}

std::string CheckServerStream(Echo::Stub* stub, const Msg& req) {
  ClientContext ctx;
  SetDeadline(&ctx);
  auto reader = stub->ServerStream(&ctx, req);
  Msg reply;
  int n = 0;
  while (reader->Read(&reply)) {
    if (reply.payload() != req.payload()) return "ServerStream: payload mismatch";
    ++n;
  }
  Status s = reader->Finish();
  if (!s.ok()) return "ServerStream: " + StatusText(s);
  if (n != req.count()) return "ServerStream: got " + std::to_string(n) + " messages";
  return "";
}

std::string CheckClientStream(Echo::Stub* stub, const Msg& req) {
  ClientContext ctx;
  SetDeadline(&ctx);
  Msg reply;
  auto writer = stub->ClientStream(&ctx, &reply);
  for (int i = 0; i < 3; ++i) writer->Write(req);
  writer->WritesDone();
  Status s = writer->Finish();
  if (!s.ok()) return "ClientStream: " + StatusText(s);
  if (reply.count() != 3 || reply.payload() != req.payload()) return "ClientStream: bad reply";
  return "";
}

std::string CheckBidi(Echo::Stub* stub, const Msg& req) {
  ClientContext ctx;
  SetDeadline(&ctx);
  auto stream = stub->Bidi(&ctx);
  Msg reply;
  for (int i = 0; i < 3; ++i) {
    if (!stream->Write(req) || !stream->Read(&reply)) break;
    if (reply.payload() != req.payload()) return "Bidi: payload mismatch";
  }
  stream->WritesDone();
  Status s = stream->Finish();
  if (!s.ok()) return "Bidi: " + StatusText(s);
  return "";
}

int RunCheck(const Options& opt) {
  auto stubs = MakeStubs(opt);
  Echo::Stub* stub = stubs[0].get();
  Msg req;
  req.set_payload(std::string(opt.size, 'c'));
  req.set_count(3);
  std::string error;
  for (auto* check : {CheckUnary, CheckServerStream, CheckClientStream, CheckBidi}) {
    error = check(stub, req);
    if (!error.empty()) break;
  }
  std::printf("{\"mode\":\"check\",\"ok\":%s,\"error\":\"%s\"}\n", error.empty() ? "true" : "false",
              JsonEscape(error).c_str());
  std::fflush(stdout);
  return error.empty() ? 0 : 1;
}

// ---------------------------------------------------------------------------
// hold: many long-lived Bidi streams.

class HoldCall final : public grpc::ClientBidiReactor<Msg, Msg> {
 public:
  HoldCall(Echo::Stub* stub, const Msg& request, Latch* opened, Latch* closed)
      : request_(request), opened_(opened), closed_(closed) {
    SetDeadline(&ctx_);
    stub->async()->Bidi(&ctx_, this);
    pending_.store(2);
    StartWrite(&request_);
    StartRead(&reply_);
    StartCall();
  }
  void Close() { StartWritesDone(); }
  void OnWriteDone(bool ok) override { Opened(ok); }
  void OnReadDone(bool ok) override { Opened(ok && reply_.payload() == request_.payload()); }
  void OnDone(const Status& status) override {
    ok_.store(ok_.load() && status.ok());
    if (pending_.load() > 0) opened_->CountDown();  // never opened
    done_.store(true);
    closed_->CountDown();
  }
  bool ok() const { return ok_.load(); }
  bool done() const { return done_.load(); }

 private:
  void Opened(bool ok) {
    if (!ok) ok_.store(false);
    if (pending_.fetch_sub(1) == 1) opened_->CountDown();
  }
  ClientContext ctx_;
  Msg request_;
  Msg reply_;
  Latch* opened_;
  Latch* closed_;
  std::atomic<int> pending_{0};
  std::atomic<bool> ok_{true};
  std::atomic<bool> done_{false};
};

int RunHold(const Options& opt) {
  auto stubs = MakeStubs(opt);
  Msg req;
  req.set_payload(std::string(opt.size, 'h'));
  const int n = std::max(1, opt.streams);
  Latch opened(n);
  Latch closed(n);
  std::vector<std::unique_ptr<HoldCall>> calls;
  const auto start = Clock::now();
  for (int i = 0; i < n; ++i) {
    calls.push_back(std::make_unique<HoldCall>(stubs[i % stubs.size()].get(), req, &opened,
                                               &closed));
  }
  const bool all_opened = opened.WaitFor(std::chrono::seconds(60));
  int open = 0;
  for (auto& c : calls) open += (c->ok() && !c->done()) ? 1 : 0;
  const double open_s = std::chrono::duration<double>(Clock::now() - start).count();
  std::printf("{\"event\":\"ready\",\"open\":%d,\"wanted\":%d,\"open_s\":%.3f}\n", open, n,
              open_s);
  std::fflush(stdout);
  // Wait for the harness (a line or EOF on stdin), bounded by --duration.
  std::atomic<bool> go{false};
  std::thread waiter([&go] {
    std::string line;
    std::getline(std::cin, line);
    go.store(true);
  });
  waiter.detach();
  const auto hold_until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(opt.duration));
  while (!go.load() && Clock::now() < hold_until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  for (auto& c : calls) {
    if (!c->done()) c->Close();
  }
  const bool all_closed = closed.WaitFor(std::chrono::seconds(60));
  int failed = 0;
  for (auto& c : calls) failed += c->ok() ? 0 : 1;
  std::printf("{\"mode\":\"hold\",\"opened\":%d,\"wanted\":%d,\"failed\":%d,\"closed\":%s}\n",
              open, n, failed, all_closed ? "true" : "false");
  std::fflush(stdout);
  if (!all_closed) std::_Exit(1);  // reactors still referenced by gRPC
  return (all_opened && failed == 0) ? 0 : 1;
}

// ---------------------------------------------------------------------------

bool ParseArgs(int argc, char** argv, Options* opt) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i];
    const std::string val = argv[i + 1];
    if (key == "--mode") {
      opt->mode = val;
    } else if (key == "--target") {
      opt->target = val;
    } else if (key == "--duration") {
      opt->duration = std::atof(val.c_str());
    } else if (key == "--concurrency") {
      opt->concurrency = std::atoi(val.c_str());
    } else if (key == "--channels") {
      opt->channels = std::atoi(val.c_str());
    } else if (key == "--messages") {
      opt->messages = std::atoi(val.c_str());
    } else if (key == "--size") {
      opt->size = std::atoi(val.c_str());
    } else if (key == "--streams") {
      opt->streams = std::atoi(val.c_str());
    } else {
      return false;
    }
  }
  return argc % 2 == 1 && !opt->mode.empty() && !opt->target.empty();
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  if (!ParseArgs(argc, argv, &opt)) {
    std::fprintf(stderr,
                 "usage: %s --mode check|server-stream|bidi|hold --target HOST:PORT\n"
                 "  [--duration S] [--concurrency N] [--channels N] [--messages N]\n"
                 "  [--size BYTES] [--streams N]\n",
                 argv[0]);
    return 2;
  }
  if (opt.mode == "check") return RunCheck(opt);
  if (opt.mode == "server-stream") return RunLoad<ServerStreamSequence>(opt);
  if (opt.mode == "bidi") return RunLoad<PingPongSequence>(opt);
  if (opt.mode == "hold") return RunHold(opt);
  std::fprintf(stderr, "stream_client: unknown mode %s\n", opt.mode.c_str());
  return 2;
}
