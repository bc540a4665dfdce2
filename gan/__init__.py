"""dcgan-forge: train a DCGAN, export its generator to ONNX, serve it over gRPC."""

__version__ = "0.1.0"
