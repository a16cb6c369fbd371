"""Editing an ONNX model's outputs without the onnx package, checked against onnx itself."""

from __future__ import annotations

import numpy as np
import pytest

from tars_opt.embeddings.onnx_outputs import OnnxEditError, fields, with_outputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
helper = onnx.helper


def _model() -> bytes:
    """y = ((x + a) * b) - c, with each step's tensor named; `unused` feeds nothing."""
    init = [
        onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), name)
        for name in ("a", "b", "c", "unused")
    ]
    nodes = [
        helper.make_node("Add", ["x", "a"], ["added"]),
        helper.make_node("Mul", ["added", "b"], ["scaled"]),
        helper.make_node("Sub", ["scaled", "c"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])],
        init,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def _run(model: bytes) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    values = session.run(None, {"x": np.array([3.0, 4.0], np.float32)})
    return dict(zip(names, values, strict=True))


def test_added_outputs_come_after_the_models_own_and_change_nothing_else() -> None:
    original = _model()
    edited = with_outputs(original, ["added", "scaled", "y"])  # y is already an output
    parsed = onnx.load_from_string(edited)
    assert [o.name for o in parsed.graph.output] == ["y", "added", "scaled"]
    assert len(parsed.graph.node) == 3 and len(parsed.graph.initializer) == 4
    out = _run(edited)
    np.testing.assert_array_equal(out["added"], [4.0, 6.0])
    np.testing.assert_array_equal(out["scaled"], [4.0, 12.0])
    np.testing.assert_array_equal(out["y"], _run(original)["y"])


def test_only_keeps_just_what_the_outputs_need() -> None:
    cut = with_outputs(_model(), ["added"], only=True)
    parsed = onnx.load_from_string(cut)
    assert [o.name for o in parsed.graph.output] == ["added"]
    assert [n.op_type for n in parsed.graph.node] == ["Add"]
    assert [i.name for i in parsed.graph.initializer] == ["a"]
    assert parsed.opset_import[0].version == 17  # the rest of the model is untouched
    assert list(_run(cut)) == ["added"]
    np.testing.assert_array_equal(_run(cut)["added"], [4.0, 6.0])


def test_unknown_tensors_and_non_models_are_refused() -> None:
    with pytest.raises(OnnxEditError, match="no tensor named nope"):
        with_outputs(_model(), ["added", "nope"])
    with pytest.raises(OnnxEditError, match="no tensor named x"):
        with_outputs(_model(), ["x"])  # a graph input, which no node produces
    with pytest.raises(OnnxEditError, match="not an ONNX model"):
        with_outputs(b"\x08\x01", ["y"])  # a valid message with no graph
    with pytest.raises(OnnxEditError, match="runs past the end"):
        list(fields(b"\x0a\x05ab"))
    with pytest.raises(OnnxEditError, match="wire type"):
        list(fields(b"\x0b"))
