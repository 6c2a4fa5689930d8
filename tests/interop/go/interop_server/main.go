// Command interop_server is a grpc-go server of the grpc.testing.TestService
// interop service (gRPC's doc/interop-test-descriptions.md, "Server"), for
// grpc-proxy's tests. Plaintext h2c only.
//
//	interop_server -port 50051 [-host 127.0.0.1] [-max_lifetime 15m]
//
// It prints "listening on HOST:PORT" on stdout once it accepts connections,
// logs every accepted connection and every call's start and end on stderr, and exits by itself after
// -max_lifetime so that a test that lost track of it cannot leave it behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "grpcproxy/interop/testpb"
)

const (
	initialMetadataKey  = "x-grpc-test-echo-initial"
	trailingMetadataKey = "x-grpc-test-echo-trailing-bin"
)

type server struct {
	testpb.UnimplementedTestServiceServer
}

func payload(size int32) (*testpb.Payload, error) {
	if size < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "negative response size %d", size)
	}
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, size)}, nil
}

// echoStatus is the status a request asks the call to end with (nil: none).
func echoStatus(s *testpb.EchoStatus) error {
	if s == nil || s.Code == 0 {
		return nil
	}
	return status.Error(codes.Code(s.Code), s.Message)
}

// echoMetadata sends back the echo keys: the initial one as a header, the
// trailing one as a trailer ("Echo Metadata").
func echoMetadata(ctx context.Context, sendHeader func(metadata.MD) error,
	setTrailer func(metadata.MD)) error {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(initialMetadataKey); len(v) > 0 {
		if err := sendHeader(metadata.Pairs(initialMetadataKey, v[0])); err != nil {
			return err
		}
	}
	if v := md.Get(trailingMetadataKey); len(v) > 0 {
		setTrailer(metadata.Pairs(trailingMetadataKey, v[0]))
	}
	return nil
}

func (s *server) EmptyCall(ctx context.Context, _ *testpb.Empty) (*testpb.Empty, error) {
	return &testpb.Empty{}, nil
}

func (s *server) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	err := echoMetadata(ctx,
		func(md metadata.MD) error { return grpc.SendHeader(ctx, md) },
		func(md metadata.MD) { _ = grpc.SetTrailer(ctx, md) })
	if err != nil {
		return nil, err
	}
	if err := echoStatus(in.ResponseStatus); err != nil {
		return nil, err
	}
	p, err := payload(in.ResponseSize)
	if err != nil {
		return nil, err
	}
	return &testpb.SimpleResponse{Payload: p}, nil
}

func sendResponses(ctx context.Context, params []*testpb.ResponseParameters,
	send func(*testpb.StreamingOutputCallResponse) error) error {
	for _, rp := range params {
		if rp.IntervalUs > 0 {
			select {
			case <-time.After(time.Duration(rp.IntervalUs) * time.Microsecond):
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			}
		}
		p, err := payload(rp.Size)
		if err != nil {
			return err
		}
		if err := send(&testpb.StreamingOutputCallResponse{Payload: p}); err != nil {
			return err
		}
	}
	return nil
}

func (s *server) StreamingOutputCall(in *testpb.StreamingOutputCallRequest,
	stream testpb.TestService_StreamingOutputCallServer) error {
	if err := echoStatus(in.ResponseStatus); err != nil {
		return err
	}
	return sendResponses(stream.Context(), in.ResponseParameters, stream.Send)
}

func (s *server) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	var sum int32
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{AggregatedPayloadSize: sum})
		}
		if err != nil {
			return err
		}
		sum += int32(len(in.GetPayload().GetBody()))
	}
}

func (s *server) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	if err := echoMetadata(stream.Context(), stream.SendHeader, stream.SetTrailer); err != nil {
		return err
	}
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := echoStatus(in.ResponseStatus); err != nil {
			return err
		}
		if err := sendResponses(stream.Context(), in.ResponseParameters, stream.Send); err != nil {
			return err
		}
	}
}

func (s *server) HalfDuplexCall(stream testpb.TestService_HalfDuplexCallServer) error {
	var reqs []*testpb.StreamingOutputCallRequest
	for {
		in, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
		reqs = append(reqs, in)
	}
	for _, in := range reqs {
		if err := sendResponses(stream.Context(), in.ResponseParameters, stream.Send); err != nil {
			return err
		}
	}
	return nil
}

// countingListener logs every accepted connection (how many the proxy opened).
type countingListener struct {
	net.Listener
	n int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		n := atomic.AddInt64(&l.n, 1)
		log.Printf("accepted connection %d from %s", n, c.RemoteAddr())
	}
	return c, err
}

// logUnary and logStream log every call's start and end (with its status), so
// a test can tell whether a call that failed through a proxy reached the server.
func logUnary(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo,
	handler grpc.UnaryHandler) (interface{}, error) {
	log.Printf("call %s: start", info.FullMethod)
	reply, err := handler(ctx, req)
	log.Printf("call %s: end %v", info.FullMethod, status.Code(err))
	return reply, err
}

func logStream(srv interface{}, ss grpc.ServerStream, info *grpc.StreamServerInfo,
	handler grpc.StreamHandler) error {
	log.Printf("call %s: start", info.FullMethod)
	err := handler(srv, ss)
	log.Printf("call %s: end %v", info.FullMethod, status.Code(err))
	return err
}

func main() {
	host := flag.String("host", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 0, "port to listen on (0: any)")
	maxLifetime := flag.Duration("max_lifetime", 15*time.Minute, "exit after this long")
	flag.Parse()
	log.SetFlags(log.Lmicroseconds)
	log.SetPrefix("interop_server: ")

	lis, err := net.Listen("tcp", net.JoinHostPort(*host, fmt.Sprint(*port)))
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	s := grpc.NewServer(grpc.UnaryInterceptor(logUnary), grpc.StreamInterceptor(logStream))
	testpb.RegisterTestServiceServer(s, &server{})
	time.AfterFunc(*maxLifetime, func() {
		log.Printf("max_lifetime %v reached, exiting", *maxLifetime)
		os.Exit(3)
	})
	fmt.Printf("listening on %s\n", lis.Addr())
	if err := s.Serve(&countingListener{Listener: lis}); err != nil {
		log.Fatalf("serve: %v", err)
	}
}
