// Benchmark backend: an echo.Echo gRPC server on the async completion-queue API.
//
//   echo_server PORT [THREADS]
//
// Listens on 127.0.0.1:PORT.  THREADS (default 1) is the number of threads that
// poll the completion queue; with 1, every RPC is handled by a single thread, so
// pinning the process to a core (taskset) gives a predictable, cheap backend.
// Prints "listening 127.0.0.1:PORT" on stdout once it accepts calls.

#include <grpcpp/alarm.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "echo.grpc.pb.h"

namespace {

using echo::Echo;
using echo::Msg;
using grpc::ServerAsyncReader;
using grpc::ServerAsyncReaderWriter;
using grpc::ServerAsyncResponseWriter;
using grpc::ServerAsyncWriter;
using grpc::ServerCompletionQueue;
using grpc::ServerContext;
using grpc::Status;

// Calls of each method waiting to be matched with an incoming RPC.
constexpr int kPrepostedCalls = 64;

// Unary replies wait this long (an alarm, no thread blocked): a slow backend.
int g_delay_ms = 0;

// One RPC in flight.  Each call has at most one operation outstanding at a
// time, so the call object itself is the completion-queue tag.
class Call {
 public:
  virtual ~Call() = default;
  // Called with the result of the operation that was started last.
  virtual void Proceed(bool ok) = 0;
};

struct Env {
  Echo::AsyncService* service;
  ServerCompletionQueue* cq;
};

class UnaryCall final : public Call {
 public:
  explicit UnaryCall(Env env) : env_(env), responder_(&ctx_) {
    env_.service->RequestUnary(&ctx_, &request_, &responder_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    if (!started_ && ok) {
      started_ = true;
      new UnaryCall(env_);
      if (g_delay_ms > 0) {
        delaying_ = true;
        alarm_.Set(env_.cq, std::chrono::system_clock::now() +
                   std::chrono::milliseconds(g_delay_ms), this);
        return;
      }
      responder_.Finish(request_, Status::OK, this);
      return;
    }
    if (delaying_) {
      delaying_ = false;
      responder_.Finish(request_, Status::OK, this);
      return;
    }
    delete this;
  }

 private:
  Env env_;
  ServerContext ctx_;
  Msg request_;
  ServerAsyncResponseWriter<Msg> responder_;
  grpc::Alarm alarm_;
  bool started_ = false;
  bool delaying_ = false;
};

class ServerStreamCall final : public Call {
 public:
  explicit ServerStreamCall(Env env) : env_(env), writer_(&ctx_) {
    env_.service->RequestServerStream(&ctx_, &request_, &writer_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case State::kWaiting:
        if (!ok) break;
        new ServerStreamCall(env_);
        reply_.set_payload(request_.payload());
        WriteNext();
        return;
      case State::kWriting:
        if (ok) {
          WriteNext();
        } else {
          Finish();
        }
        return;
      case State::kFinishing:
        break;
    }
    delete this;
  }

 private:
  enum class State { kWaiting, kWriting, kFinishing };

  void WriteNext() {
    const int total = request_.count();
    if (sent_ >= total) {
      Finish();
      return;
    }
    ++sent_;
    reply_.set_count(sent_);
    state_ = State::kWriting;
    if (sent_ == total) {
      state_ = State::kFinishing;
      writer_.WriteAndFinish(reply_, grpc::WriteOptions(), Status::OK, this);
    } else {
      writer_.Write(reply_, this);
    }
  }
  void Finish() {
    state_ = State::kFinishing;
    writer_.Finish(Status::OK, this);
  }

  Env env_;
  ServerContext ctx_;
  Msg request_;
  Msg reply_;
  ServerAsyncWriter<Msg> writer_;
  State state_ = State::kWaiting;
  int sent_ = 0;
};

class ClientStreamCall final : public Call {
 public:
  explicit ClientStreamCall(Env env) : env_(env), reader_(&ctx_) {
    env_.service->RequestClientStream(&ctx_, &reader_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case State::kWaiting:
        if (!ok) break;
        new ClientStreamCall(env_);
        state_ = State::kReading;
        reader_.Read(&incoming_, this);
        return;
      case State::kReading:
        if (ok) {
          ++received_;
          reply_.set_payload(incoming_.payload());
          reader_.Read(&incoming_, this);
        } else {
          state_ = State::kFinishing;
          reply_.set_count(received_);
          reader_.Finish(reply_, Status::OK, this);
        }
        return;
      case State::kFinishing:
        break;
    }
    delete this;
  }

 private:
  enum class State { kWaiting, kReading, kFinishing };

  Env env_;
  ServerContext ctx_;
  Msg incoming_;
  Msg reply_;
  ServerAsyncReader<Msg, Msg> reader_;
  State state_ = State::kWaiting;
  int received_ = 0;
};

class BidiCall final : public Call {
 public:
  explicit BidiCall(Env env) : env_(env), stream_(&ctx_) {
    env_.service->RequestBidi(&ctx_, &stream_, env_.cq, env_.cq, this);
  }
  void Proceed(bool ok) override {
    switch (state_) {
      case State::kWaiting:
        if (!ok) break;
        new BidiCall(env_);
        Read();
        return;
      case State::kReading:
        if (ok) {
          state_ = State::kWriting;
          stream_.Write(message_, this);
        } else {
          Finish();
        }
        return;
      case State::kWriting:
        if (ok) {
          Read();
        } else {
          Finish();
        }
        return;
      case State::kFinishing:
        break;
    }
    delete this;
  }

 private:
  enum class State { kWaiting, kReading, kWriting, kFinishing };

  void Read() {
    state_ = State::kReading;
    stream_.Read(&message_, this);
  }
  void Finish() {
    state_ = State::kFinishing;
    stream_.Finish(Status::OK, this);
  }

  Env env_;
  ServerContext ctx_;
  Msg message_;
  ServerAsyncReaderWriter<Msg, Msg> stream_;
  State state_ = State::kWaiting;
};

void Poll(ServerCompletionQueue* cq) {
  void* tag = nullptr;
  bool ok = false;
  while (cq->Next(&tag, &ok)) {
    static_cast<Call*>(tag)->Proceed(ok);
  }
}

int Run(int port, int threads) {
  const std::string address = "127.0.0.1:" + std::to_string(port);
  Echo::AsyncService service;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials());
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, 100000);
  builder.RegisterService(&service);
  std::unique_ptr<ServerCompletionQueue> cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::fprintf(stderr, "echo_server: cannot listen on %s\n", address.c_str());
    return 1;
  }
  const Env env{&service, cq.get()};
  for (int i = 0; i < kPrepostedCalls; ++i) {
    new UnaryCall(env);
    new ServerStreamCall(env);
    new ClientStreamCall(env);
    new BidiCall(env);
  }
  std::printf("listening %s\n", address.c_str());
  std::fflush(stdout);
  std::vector<std::thread> pollers;
  for (int i = 1; i < threads; ++i) pollers.emplace_back(Poll, cq.get());
  Poll(cq.get());
  for (auto& t : pollers) t.join();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s PORT [THREADS [UNARY_DELAY_MS]]\n", argv[0]);
    return 2;
  }
  const int port = std::atoi(argv[1]);
  const int threads = argc >= 3 ? std::atoi(argv[2]) : 1;
  g_delay_ms = argc == 4 ? std::atoi(argv[3]) : 0;
  if (port <= 0 || port > 65535 || threads < 1) {
    std::fprintf(stderr, "echo_server: bad PORT or THREADS\n");
    return 2;
  }
  // The harness stops the server with SIGTERM; the default action (exit) is fine.
  std::signal(SIGPIPE, SIG_IGN);
  return Run(port, threads);
}
