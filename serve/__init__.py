"""Serve: the exported ONNX generator over gRPC with dynamic batching (onnxruntime, grpc, numpy;
never torch)."""
