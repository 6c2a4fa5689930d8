// Command interop_client runs one gRPC interop test case (gRPC's
// doc/interop-test-descriptions.md, "Client") with grpc-go against a
// grpc.testing.TestService server, for grpc-proxy's tests. Plaintext h2c only.
//
//	interop_client -server_port 8080 -test_case large_unary [-server_host 127.0.0.1]
//	               [-rpc_timeout 10s] [-deadline 60s] [-connect_timeout 10s]
//	               [-soak_iterations 1000 -soak_request_size 271828 -soak_response_size 314159]
//
// Every case runs on one ClientConn, connected (HTTP/2 preface and SETTINGS
// exchanged) before the case starts. The dialer counts the TCP connections it
// opens: a case that needed more than one (the server or a proxy in between
// closed the connection, e.g. with a GOAWAY, and grpc-go reconnected) fails.
// Output: "PASS <case> (...)" on stdout and exit 0, or "FAIL <case>: <reason>"
// and exit 1; exit 2 on bad usage, 3 when -deadline passes.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	testpb "grpcproxy/interop/testpb"
)

const (
	largeReqSize  = 271828
	largeRespSize = 314159

	initialMetadataKey    = "x-grpc-test-echo-initial"
	initialMetadataValue  = "test_initial_metadata_value"
	trailingMetadataKey   = "x-grpc-test-echo-trailing-bin"
	trailingMetadataValue = "\xab\xab\xab"

	specialStatusMessage = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n"
)

var (
	reqSizes  = []int{27182, 8, 1828, 45904}
	respSizes = []int{31415, 9, 2653, 58979}

	rpcTimeout       = flag.Duration("rpc_timeout", 10*time.Second, "deadline of each RPC")
	soakIterations   = flag.Int("soak_iterations", 10, "rpc_soak: how many unary calls")
	soakRequestSize  = flag.Int("soak_request_size", largeReqSize, "rpc_soak: request payload bytes")
	soakResponseSize = flag.Int("soak_response_size", largeRespSize, "rpc_soak: response payload bytes")
)

func zeros(n int) *testpb.Payload {
	return &testpb.Payload{Type: testpb.PayloadType_COMPRESSABLE, Body: make([]byte, n)}
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), *rpcTimeout)
}

func wantCode(err error, want codes.Code, what string) error {
	if got := status.Code(err); got != want {
		return fmt.Errorf("%s: got status %v (%v), want %v", what, got, err, want)
	}
	return nil
}

func doEmptyUnary(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	reply, err := c.EmptyCall(ctx, &testpb.Empty{})
	if err != nil {
		return fmt.Errorf("EmptyCall: %v", err)
	}
	if reply == nil {
		return errors.New("EmptyCall: nil reply")
	}
	return nil
}

func largeUnary(c testpb.TestServiceClient, reqSize, respSize int) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	reply, err := c.UnaryCall(ctx, &testpb.SimpleRequest{
		ResponseSize: int32(respSize), Payload: zeros(reqSize)})
	if err != nil {
		return fmt.Errorf("UnaryCall: %v", err)
	}
	body := reply.GetPayload().GetBody()
	if len(body) != respSize || !bytes.Equal(body, make([]byte, respSize)) {
		return fmt.Errorf("UnaryCall: got a %d-byte body, want %d zero bytes", len(body), respSize)
	}
	return nil
}

func doLargeUnary(c testpb.TestServiceClient) error {
	return largeUnary(c, largeReqSize, largeRespSize)
}

func doClientStreaming(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	stream, err := c.StreamingInputCall(ctx)
	if err != nil {
		return fmt.Errorf("StreamingInputCall: %v", err)
	}
	sum := 0
	for _, n := range reqSizes {
		if err := stream.Send(&testpb.StreamingInputCallRequest{Payload: zeros(n)}); err != nil {
			return fmt.Errorf("Send(%d bytes): %v", n, err)
		}
		sum += n
	}
	reply, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("CloseAndRecv: %v", err)
	}
	if got := int(reply.GetAggregatedPayloadSize()); got != sum {
		return fmt.Errorf("aggregated_payload_size %d, want %d", got, sum)
	}
	return nil
}

func doServerStreaming(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	req := &testpb.StreamingOutputCallRequest{}
	for _, n := range respSizes {
		req.ResponseParameters = append(req.ResponseParameters,
			&testpb.ResponseParameters{Size: int32(n)})
	}
	stream, err := c.StreamingOutputCall(ctx, req)
	if err != nil {
		return fmt.Errorf("StreamingOutputCall: %v", err)
	}
	var got []int
	for {
		reply, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("Recv after %d responses: %v", len(got), err)
		}
		got = append(got, len(reply.GetPayload().GetBody()))
	}
	if fmt.Sprint(got) != fmt.Sprint(respSizes) {
		return fmt.Errorf("response sizes %v, want %v", got, respSizes)
	}
	return nil
}

func doPingPong(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("FullDuplexCall: %v", err)
	}
	for i, n := range reqSizes {
		req := &testpb.StreamingOutputCallRequest{
			ResponseParameters: []*testpb.ResponseParameters{{Size: int32(respSizes[i])}},
			Payload:            zeros(n),
		}
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("Send #%d: %v", i, err)
		}
		reply, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("Recv #%d: %v", i, err)
		}
		if got := len(reply.GetPayload().GetBody()); got != respSizes[i] {
			return fmt.Errorf("response #%d: %d bytes, want %d", i, got, respSizes[i])
		}
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("CloseSend: %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("after half-close: got %v, want the end of the stream", err)
	}
	return nil
}

func doEmptyStream(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("FullDuplexCall: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("CloseSend: %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("got %v, want the end of the stream with no response", err)
	}
	return nil
}

func doTimeoutOnSleepingServer(c testpb.TestServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return wantCode(err, codes.DeadlineExceeded, "FullDuplexCall")
	}
	err = stream.Send(&testpb.StreamingOutputCallRequest{Payload: zeros(27182)})
	if err != nil && err != io.EOF {
		return wantCode(err, codes.DeadlineExceeded, "Send")
	}
	_, err = stream.Recv()
	return wantCode(err, codes.DeadlineExceeded, "Recv")
}

// doCancelAfterBegin waits a moment before cancelling: grpc-go writes a call's
// HEADERS asynchronously and drops them when the call is cancelled first, and
// the point here is a cancellation that must travel (through a proxy) to a
// server that has seen the call.
func doCancelAfterBegin(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	stream, err := c.StreamingInputCall(ctx)
	if err != nil {
		cancel()
		return fmt.Errorf("StreamingInputCall: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	cancel()
	_, err = stream.CloseAndRecv()
	return wantCode(err, codes.Canceled, "CloseAndRecv after cancel")
}

func doCancelAfterFirstResponse(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("FullDuplexCall: %v", err)
	}
	err = stream.Send(&testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: 31415}},
		Payload:            zeros(27182)})
	if err != nil {
		return fmt.Errorf("Send: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		return fmt.Errorf("Recv: %v", err)
	}
	cancel()
	_, err = stream.Recv()
	return wantCode(err, codes.Canceled, "Recv after cancel")
}

func checkEchoedMetadata(header, trailer metadata.MD, what string) error {
	if v := header.Get(initialMetadataKey); len(v) != 1 || v[0] != initialMetadataValue {
		return fmt.Errorf("%s: initial metadata %s = %q, want [%q]", what, initialMetadataKey,
			v, initialMetadataValue)
	}
	if v := trailer.Get(trailingMetadataKey); len(v) != 1 || v[0] != trailingMetadataValue {
		return fmt.Errorf("%s: trailing metadata %s = %q, want [%q]", what, trailingMetadataKey,
			v, trailingMetadataValue)
	}
	return nil
}

func doCustomMetadata(c testpb.TestServiceClient) error {
	md := metadata.Pairs(initialMetadataKey, initialMetadataValue,
		trailingMetadataKey, trailingMetadataValue)
	ctx, cancel := rpcCtx()
	defer cancel()
	ctx = metadata.NewOutgoingContext(ctx, md)

	var header, trailer metadata.MD
	reply, err := c.UnaryCall(ctx, &testpb.SimpleRequest{
		ResponseSize: largeRespSize, Payload: zeros(largeReqSize)},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		return fmt.Errorf("UnaryCall: %v", err)
	}
	if got := len(reply.GetPayload().GetBody()); got != largeRespSize {
		return fmt.Errorf("UnaryCall: %d-byte body, want %d", got, largeRespSize)
	}
	if err := checkEchoedMetadata(header, trailer, "UnaryCall"); err != nil {
		return err
	}

	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("FullDuplexCall: %v", err)
	}
	err = stream.Send(&testpb.StreamingOutputCallRequest{
		ResponseParameters: []*testpb.ResponseParameters{{Size: largeRespSize}},
		Payload:            zeros(largeReqSize)})
	if err != nil {
		return fmt.Errorf("Send: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("CloseSend: %v", err)
	}
	if _, err := stream.Recv(); err != nil {
		return fmt.Errorf("Recv: %v", err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		return fmt.Errorf("Recv: got %v, want the end of the stream", err)
	}
	header, err = stream.Header()
	if err != nil {
		return fmt.Errorf("Header: %v", err)
	}
	return checkEchoedMetadata(header, stream.Trailer(), "FullDuplexCall")
}

func statusRoundTrip(c testpb.TestServiceClient, code codes.Code, msg string) error {
	echo := &testpb.EchoStatus{Code: int32(code), Message: msg}
	check := func(err error, what string) error {
		s, _ := status.FromError(err)
		if s.Code() != code || s.Message() != msg {
			return fmt.Errorf("%s: got status %v %q, want %v %q", what, s.Code(), s.Message(),
				code, msg)
		}
		return nil
	}
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := c.UnaryCall(ctx, &testpb.SimpleRequest{ResponseStatus: echo})
	if err := check(err, "UnaryCall"); err != nil {
		return err
	}
	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		return fmt.Errorf("FullDuplexCall: %v", err)
	}
	if err := stream.Send(&testpb.StreamingOutputCallRequest{ResponseStatus: echo}); err != nil {
		return fmt.Errorf("Send: %v", err)
	}
	if err := stream.CloseSend(); err != nil {
		return fmt.Errorf("CloseSend: %v", err)
	}
	_, err = stream.Recv()
	return check(err, "FullDuplexCall")
}

func doStatusCodeAndMessage(c testpb.TestServiceClient) error {
	return statusRoundTrip(c, codes.Unknown, "test status message")
}

func doSpecialStatusMessage(c testpb.TestServiceClient) error {
	return statusRoundTrip(c, codes.Unknown, specialStatusMessage)
}

func doUnimplementedMethod(c testpb.TestServiceClient) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := c.UnimplementedCall(ctx, &testpb.Empty{})
	return wantCode(err, codes.Unimplemented, "TestService/UnimplementedCall")
}

func doUnimplementedService(cc *grpc.ClientConn) error {
	ctx, cancel := rpcCtx()
	defer cancel()
	_, err := testpb.NewUnimplementedServiceClient(cc).UnimplementedCall(ctx, &testpb.Empty{})
	return wantCode(err, codes.Unimplemented, "UnimplementedService/UnimplementedCall")
}

// doRPCSoak: -soak_iterations unary calls one after the other on the one
// connection; every one must succeed.
func doRPCSoak(c testpb.TestServiceClient) (string, error) {
	start := time.Now()
	var lat []time.Duration
	for i := 0; i < *soakIterations; i++ {
		t := time.Now()
		if err := largeUnary(c, *soakRequestSize, *soakResponseSize); err != nil {
			return "", fmt.Errorf("call %d of %d (after %v): %v", i+1, *soakIterations,
				time.Since(start).Round(time.Millisecond), err)
		}
		lat = append(lat, time.Since(t))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(p*float64(len(lat)-1))].Round(time.Microsecond)
	}
	return fmt.Sprintf("%d calls in %v, p50 %v, p99 %v, max %v", len(lat),
		time.Since(start).Round(time.Millisecond), pct(0.5), pct(0.99), pct(1)), nil
}

var cases = []string{
	"empty_unary", "large_unary", "client_streaming", "server_streaming", "ping_pong",
	"empty_stream", "timeout_on_sleeping_server", "cancel_after_begin",
	"cancel_after_first_response", "custom_metadata", "status_code_and_message",
	"special_status_message", "unimplemented_method", "unimplemented_service", "rpc_soak",
}

func run(cc *grpc.ClientConn, name string) (string, error) {
	c := testpb.NewTestServiceClient(cc)
	switch name {
	case "empty_unary":
		return "", doEmptyUnary(c)
	case "large_unary":
		return "", doLargeUnary(c)
	case "client_streaming":
		return "", doClientStreaming(c)
	case "server_streaming":
		return "", doServerStreaming(c)
	case "ping_pong":
		return "", doPingPong(c)
	case "empty_stream":
		return "", doEmptyStream(c)
	case "timeout_on_sleeping_server":
		return "", doTimeoutOnSleepingServer(c)
	case "cancel_after_begin":
		return "", doCancelAfterBegin(c)
	case "cancel_after_first_response":
		return "", doCancelAfterFirstResponse(c)
	case "custom_metadata":
		return "", doCustomMetadata(c)
	case "status_code_and_message":
		return "", doStatusCodeAndMessage(c)
	case "special_status_message":
		return "", doSpecialStatusMessage(c)
	case "unimplemented_method":
		return "", doUnimplementedMethod(c)
	case "unimplemented_service":
		return "", doUnimplementedService(cc)
	case "rpc_soak":
		return doRPCSoak(c)
	}
	return "", fmt.Errorf("unknown test case %q (known: %s)", name, strings.Join(cases, ", "))
}

func main() {
	host := flag.String("server_host", "127.0.0.1", "server host")
	port := flag.Int("server_port", 0, "server port")
	testCase := flag.String("test_case", "", "the test case to run: "+strings.Join(cases, ", "))
	deadline := flag.Duration("deadline", 60*time.Second, "exit 3 if the case runs longer")
	connectTimeout := flag.Duration("connect_timeout", 10*time.Second,
		"how long to wait for the connection before the case starts")
	flag.Parse()
	if *port == 0 || *testCase == "" {
		fmt.Fprintln(os.Stderr, "usage: interop_client -server_port PORT -test_case CASE")
		os.Exit(2)
	}
	time.AfterFunc(*deadline, func() {
		fmt.Printf("FAIL %s: still running after -deadline %v\n", *testCase, *deadline)
		os.Exit(3)
	})

	var dials int64
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		atomic.AddInt64(&dials, 1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	target := net.JoinHostPort(*host, fmt.Sprint(*port))
	// Connect before the case starts (unlike gRPC's own interop clients), so
	// that a case's first call goes on the wire at once: a 1 ms deadline
	// (timeout_on_sleeping_server) would otherwise expire while the connection
	// is still being set up and never reach the server or a proxy.
	ctx, cancel := context.WithTimeout(context.Background(), *connectTimeout)
	cc, err := grpc.DialContext(ctx, target, grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithContextDialer(dialer))
	cancel()
	if err != nil {
		fmt.Printf("FAIL %s: connect to %s: %v\n", *testCase, target, err)
		os.Exit(1)
	}
	start := time.Now()
	info, err := run(cc, *testCase)
	elapsed := time.Since(start).Round(time.Millisecond)
	cc.Close()
	n := atomic.LoadInt64(&dials)
	if err == nil && n > 1 {
		err = fmt.Errorf("needed %d connections, want 1 (the connection was closed mid-case)", n)
	}
	if err != nil {
		fmt.Printf("FAIL %s: %v [%v, %d connection(s)]\n", *testCase, err, elapsed, n)
		os.Exit(1)
	}
	if info != "" {
		info = ", " + info
	}
	fmt.Printf("PASS %s (%v, %d connection(s)%s)\n", *testCase, elapsed, n, info)
}
