"""NVIDIA's tritonclient against a server, run in .venv-triton (tritonclient needs protobuf < 7,
our stubs protobuf 7, so it cannot share the test process): `python triton_client.py < JOB`.

JOB (JSON on stdin): {"protocol": "grpc" | "http", "url": "HOST:PORT", "model": NAME,
"steps": [STEP, ...]}; prints one JSON list with a result per step. Arrays travel as .npy
files. Steps:

    {"op": "live" | "ready" | "server_metadata"}
    {"op": "model_ready" | "metadata", "model": NAME?}
    {"op": "infer", "model": NAME?, "inputs": [{"name", "datatype", "npy"}],
     "outputs": [NAME, ...]?, "binary": bool?, "parameters": {...}?, "out": PATH}
        -> {"shape", "datatype", "parameters"} and the output written to PATH
    {"op": "descriptor"}  -> tritonclient's own proto: {message: {field: [number, type,
        repeated, type name]}} and {method: [input, output]}

A step that fails gives {"error": {"status": ..., "message": ...}} (gRPC: "StatusCode.NAME";
HTTP: the status code).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def main() -> None:
    from tritonclient.utils import InferenceServerException

    job = json.load(sys.stdin)
    grpc = job["protocol"] == "grpc"
    if grpc:
        import tritonclient.grpc as tc
    else:
        import tritonclient.http as tc  # type: ignore[no-redef]
    client = tc.InferenceServerClient(job["url"])
    results = []
    for step in job["steps"]:
        try:
            results.append(_run(tc, client, grpc, job["model"], step))
        except InferenceServerException as e:
            results.append({"error": {"status": e.status(), "message": e.message()}})
    json.dump(results, sys.stdout)


def _run(tc: Any, client: Any, grpc: bool, model: str, step: dict[str, Any]) -> Any:
    op, name = step["op"], step.get("model", model)
    as_json = {"as_json": True} if grpc else {}
    if op == "live":
        return client.is_server_live()
    if op == "ready":
        return client.is_server_ready()
    if op == "model_ready":
        return client.is_model_ready(name)
    if op == "server_metadata":
        return client.get_server_metadata(**as_json)
    if op == "metadata":
        return client.get_model_metadata(name, **as_json)
    if op == "descriptor":
        from tritonclient.grpc import service_pb2

        return describe(service_pb2)
    if op == "infer":
        return _infer(tc, client, grpc, name, step)
    raise ValueError(f"unknown op {op}")


def _infer(tc: Any, client: Any, grpc: bool, name: str, step: dict[str, Any]) -> dict[str, Any]:
    binary = step.get("binary", True)
    inputs = []
    for spec in step.get("inputs", []):
        data = np.load(spec["npy"])
        t = tc.InferInput(spec["name"], list(data.shape), spec["datatype"])
        if grpc:
            t.set_data_from_numpy(data)
        else:
            t.set_data_from_numpy(data, binary_data=binary)
        inputs.append(t)
    outputs = None
    if "outputs" in step:
        outputs = [tc.InferRequestedOutput(o) if grpc else
                   tc.InferRequestedOutput(o, binary_data=binary) for o in step["outputs"]]
    result = client.infer(name, inputs, outputs=outputs, parameters=step.get("parameters"))
    response = result.get_response(as_json=True) if grpc else result.get_response()
    out = response["outputs"][0]
    np.save(step["out"], result.as_numpy(out["name"]))
    return {"name": out["name"], "shape": [int(d) for d in out["shape"]],
            "datatype": out["datatype"], "parameters": response.get("parameters", {})}


def describe(service_pb2: Any) -> dict[str, Any]:
    """A generated grpc_service module's messages (with nested ones) and service methods, by
    full name: what the wire format depends on. The tests compare ours with tritonclient's."""
    messages: dict[str, Any] = {}

    def walk(message: Any) -> None:
        messages[message.full_name] = {
            f.name: [f.number, f.type, f.is_repeated, f.message_type.full_name
                     if f.message_type else ""] for f in message.fields}
        messages[message.full_name]["oneofs"] = sorted(o.name for o in message.oneofs)
        for nested in message.nested_types:
            walk(nested)

    for message in service_pb2.DESCRIPTOR.message_types_by_name.values():
        walk(message)
    service = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    methods = {m.name: [m.input_type.full_name, m.output_type.full_name] for m in service.methods}
    return {"messages": messages, "methods": methods, "service": service.full_name}


if __name__ == "__main__":
    main()
