"""Choose which tensors an ONNX model returns, editing its protobuf bytes directly.

The router reads a hidden state from inside the embedding model (embeddings/model.py): the
full model must also return it, and a cut-down copy must compute only what it needs. The
`onnx` package does this too, but importing it costs about a second (its ml_dtypes
extension), paid by every CLI call; these few protobuf wire-format rules cost nothing.

Only what ONNX models use is handled: varint, fixed 32/64-bit and length-delimited fields.
Nodes with subgraphs (If, Loop, Scan) are not looked into; the embedding model has none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

# Field numbers from onnx.proto (stable since ONNX IR version 3).
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER, GRAPH_OUTPUT = 1, 5, 12
TENSOR_NAME = 8  # TensorProto.name
NODE_INPUT, NODE_OUTPUT = 1, 2
VALUE_NAME, VALUE_TYPE = 1, 2
TYPE_TENSOR, TENSOR_ELEM_TYPE = 1, 1
FLOAT = 1  # TensorProto.FLOAT

_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class OnnxEditError(ValueError):
    """The bytes are not an ONNX model this module can edit, or a tensor is not in it."""


@dataclass(frozen=True)
class Field:
    """One field of a protobuf message: its number, wire type, payload and whole record."""

    number: int
    wire: int
    payload: memoryview  # the value (for length-delimited fields, without the length)
    record: memoryview  # key, length and value, as they stand in the message


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise OnnxEditError("truncated or malformed protobuf varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def fields(message: bytes | memoryview) -> Iterator[Field]:
    """The fields of a serialised protobuf message, in order (views into it, not copies)."""
    message = memoryview(message)
    pos = 0
    while pos < len(message):
        start = pos
        key, pos = _read_varint(message, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            _, end = _read_varint(message, pos)
            body = pos
        elif wire == _FIXED64:
            body, end = pos, pos + 8
        elif wire == _FIXED32:
            body, end = pos, pos + 4
        elif wire == _BYTES:
            size, body = _read_varint(message, pos)
            end = body + size
        else:
            raise OnnxEditError(f"unsupported protobuf wire type {wire}")
        if end > len(message):
            raise OnnxEditError("protobuf field runs past the end of the message")
        pos = end
        yield Field(number, wire, message[body:end], message[start:end])


def _record(number: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return _varint(number << 3 | _BYTES) + _varint(len(payload)) + payload


def _float_output(name: str) -> bytes:
    """A GraphProto.output entry: a float tensor of any shape called `name`."""
    tensor = _varint(TENSOR_ELEM_TYPE << 3 | _VARINT) + _varint(FLOAT)
    value = _record(VALUE_NAME, name.encode()) + _record(VALUE_TYPE, _record(TYPE_TENSOR, tensor))
    return _record(GRAPH_OUTPUT, value)


def _strings(message: memoryview, number: int) -> list[str]:
    return [bytes(f.payload).decode() for f in fields(message) if f.number == number]


def _graph(model: bytes) -> memoryview:
    found = [f for f in fields(model) if f.number == MODEL_GRAPH and f.wire == _BYTES]
    if len(found) != 1:
        raise OnnxEditError("not an ONNX model: no graph")
    return found[0].payload


def _needed(nodes: list[memoryview], targets: set[str]) -> list[bool]:
    """Which nodes (in topological order) the tensors in `targets` depend on."""
    wanted = set(targets)
    keep = [False] * len(nodes)
    for i in range(len(nodes) - 1, -1, -1):
        if wanted.intersection(_strings(nodes[i], NODE_OUTPUT)):
            keep[i] = True
            wanted.update(_strings(nodes[i], NODE_INPUT))
    return keep


def with_outputs(model: bytes, names: Sequence[str], *, only: bool = False) -> bytes:
    """`model` returning the float tensors `names` too (after its own outputs).

    `only=True` returns just `names` and drops every node and initializer they do not
    depend on, so the model computes no more than they need (onnxruntime would keep
    running unused nodes). Raises OnnxEditError when a name is not a tensor some node
    produces.
    """
    parts = list(fields(_graph(model)))
    nodes = [f.payload for f in parts if f.number == GRAPH_NODE]
    produced = {n for node in nodes for n in _strings(node, NODE_OUTPUT)}
    missing = [n for n in names if n not in produced]
    if missing:
        raise OnnxEditError(f"the model has no tensor named {', '.join(missing)}")
    if only:
        keep = _needed(nodes, set(names))
        kept_nodes = [node for node, k in zip(nodes, keep, strict=True) if k]
        used = {n for node in kept_nodes for n in _strings(node, NODE_INPUT)}
    else:  # a tensor already returned is not listed twice
        keep = [True] * len(nodes)
        outputs = [f.payload for f in parts if f.number == GRAPH_OUTPUT]
        have = {n for value in outputs for n in _strings(value, VALUE_NAME)}
        names = [n for n in names if n not in have]
    kept = iter(keep)
    graph: list[bytes | memoryview] = []
    for f in parts:
        if f.number == GRAPH_NODE:
            if next(kept):
                graph.append(f.record)
        elif not only or (f.number != GRAPH_OUTPUT and _used(f, used)):
            graph.append(f.record)
    graph += [_float_output(name) for name in names]
    size = sum(len(piece) for piece in graph)
    # One join copies the ~20 MB of weights once; building it up piece by piece cost 50 ms.
    out: list[bytes | memoryview] = []
    for f in fields(model):
        if f.number == MODEL_GRAPH:
            out += [_varint(MODEL_GRAPH << 3 | _BYTES), _varint(size), *graph]
        else:
            out.append(f.record)
    return b"".join(out)


def _used(f: Field, used: set[str]) -> bool:
    """Whether a graph field stays in a cut-down model: initializers only if a node reads them."""
    if f.number != GRAPH_INITIALIZER:
        return True
    return any(name in used for name in _strings(f.payload, TENSOR_NAME))
