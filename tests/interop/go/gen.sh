#!/bin/bash
# Regenerate testpb/test.pb.go from testpb/test.proto (developers only: the
# generated file is committed, and setup_go.sh needs neither tool).
# Needs protoc and the protoc-gen-go that matches Debian's grpc-go 1.33
# (github.com/golang/protobuf 1.3): apt-get install protobuf-compiler golang-goprotobuf-dev
set -euo pipefail
cd "$(dirname "$0")/testpb"
protoc --go_out=plugins=grpc,paths=source_relative:. test.proto
