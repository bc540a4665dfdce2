"""Export: the trained generator as a self-describing ONNX model, with proven parity (torch, onnx,
onnxruntime)."""
