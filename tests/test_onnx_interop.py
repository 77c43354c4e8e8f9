"""ONNX interop: files attune writes pass onnx.checker (full_check) and run in ONNX Runtime
with the outputs attune computed (within 1e-4); a model written with onnx.helper (typed data
fields, unnamed nodes, attributes of several kinds) loads in attune and saves back to a model
ONNX Runtime runs the same.

Models and reference outputs come from `test_io --emit DIR` (in $ATTUNE_BUILD). Skipped (exit
77) where onnx, onnxruntime or numpy cannot be imported."""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError as e:  # pragma: no cover
    print(f"skipped: needs onnx, onnxruntime and numpy ({e})")
    sys.exit(77)

build = os.environ.get("ATTUNE_BUILD")
exe = os.path.join(build, "test_io") if build else None
if not exe or not os.path.exists(exe):
    print(f"skipped: test_io not built (ATTUNE_BUILD={build!r})")
    sys.exit(77)

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL:", msg)


def ort_session(path):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def check_attune_file(path, name):
    """The properties every attune file has (DESIGN.md section 5)."""
    m = onnx.load(path)
    with open(path, "rb") as f:
        if m.SerializeToString() != f.read():
            fail(f"{name}: not byte-identical to protobuf's own serialization of the same model")
    try:
        onnx.checker.check_model(m, full_check=True)
    except Exception as e:  # noqa: BLE001 - the checker raises several types
        fail(f"{name}: onnx.checker: {e}")
    if m.ir_version != 10:
        fail(f"{name}: ir_version {m.ir_version}")
    ops = {o.domain: o.version for o in m.opset_import}
    if ops != {"": 21, "ai.attune": 1}:
        fail(f"{name}: opset_import {ops}")
    if m.producer_name != "attune":
        fail(f"{name}: producer_name {m.producer_name!r}")
    for t in m.graph.initializer:
        n = int(np.prod(t.dims)) if len(t.dims) else 1
        if n and not t.raw_data:
            fail(f"{name}: initializer {t.name} not in raw_data")
        arr = numpy_helper.to_array(t)
        if arr.size != n:
            fail(f"{name}: initializer {t.name} size")
    for n in m.graph.node:
        for a in n.attribute:
            if a.type == onnx.AttributeProto.UNDEFINED:
                fail(f"{name}: node {n.name} attribute {a.name} has no type")
    names = [n.name for n in m.graph.node if n.name]
    if len(names) != len(set(names)):
        fail(f"{name}: duplicate node names")
    for vi in list(m.graph.input) + list(m.graph.output):
        if not vi.type.tensor_type.HasField("shape"):
            fail(f"{name}: {vi.name} has no shape")
    return m


def run_emitted(d):
    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    seen = set()
    for entry in manifest["models"]:
        name = entry["name"]
        seen.add(name)
        if entry["error"]:
            fail(f"{name}: attune could not build or run it: {entry['error']}")
            continue
        path = os.path.join(d, entry["file"])
        m = check_attune_file(path, name)
        if name == "mixed":
            meta = {p.key: p.value for p in m.metadata_props}
            if meta.get("labels") != "alpha,beta,gamma" or "attune.params" not in meta:
                fail(f"mixed: metadata {sorted(meta)}")
            dims = m.graph.input[0].type.tensor_type.shape.dim
            if dims[0].dim_param != "B" or dims[1].dim_value != 4:
                fail("mixed: input x should be [B, 4]")
            kinds = {a.type for n in m.graph.node for a in n.attribute}
            want = {onnx.AttributeProto.FLOAT, onnx.AttributeProto.INT,
                    onnx.AttributeProto.STRING, onnx.AttributeProto.INTS,
                    onnx.AttributeProto.FLOATS, onnx.AttributeProto.TENSOR}
            if not want <= kinds:
                fail(f"mixed: attribute kinds {kinds}")
        if not entry["run"]:
            continue
        try:
            sess = ort_session(path)
        except Exception as e:  # noqa: BLE001
            fail(f"{name}: onnxruntime could not load it: {e}")
            continue
        feeds = {k: np.load(os.path.join(d, f)) for k, f in entry["inputs"]}
        outs = [k for k, _ in entry["outputs"]]
        got = sess.run(outs, feeds)
        worst = 0.0
        for (k, f), g in zip(entry["outputs"], got):
            want = np.load(os.path.join(d, f))
            if want.shape != g.shape or want.dtype != g.dtype:
                fail(f"{name}: output {k}: attune {want.dtype}{want.shape}, "
                     f"onnxruntime {g.dtype}{g.shape}")
                continue
            err = float(np.max(np.abs(want.astype(np.float64) - g.astype(np.float64)),
                               initial=0.0))
            worst = max(worst, err)
            if not np.allclose(want, g, atol=1e-4, rtol=1e-4):
                fail(f"{name}: output {k}: max |attune - onnxruntime| = {err:.3g}")
        print(f"{name}: checker ok, onnxruntime max abs diff {worst:.2e}")
    for need in ("mixed", "mlp", "training"):
        if need not in seen:
            fail(f"manifest lacks {need}")


def foreign_model(path):
    """A model as other tools write it: typed fields, unnamed nodes, opset 17."""
    rng = np.random.default_rng(3)
    w = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, [4, 3], w.flatten().tolist()),
        helper.make_tensor("b", TensorProto.FLOAT, [3], b.flatten().tolist()),
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
    ]
    nodes = [
        helper.make_node("MatMul", ["X", "W"], ["h"]),
        helper.make_node("Add", ["h", "b"], ["h2"]),
        helper.make_node("LeakyRelu", ["h2"], ["h3"], alpha=0.2),
        helper.make_node("Transpose", ["h3"], ["t"], perm=[1, 0]),
        helper.make_node("Transpose", ["t"], ["h4"], perm=[1, 0]),
        helper.make_node("Softmax", ["h4"], ["Y"], axis=-1),
        helper.make_node("ReduceSum", ["h4", "axes"], ["S"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "foreign",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("S", TensorProto.FLOAT, ["N"])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)


def run_foreign(d):
    src, dst = os.path.join(d, "foreign.onnx"), os.path.join(d, "foreign.attune.onnx")
    foreign_model(src)
    r = subprocess.run([exe, "--resave", src, dst], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"foreign: attune could not load and save it: {r.stderr.strip()}")
        return
    check_attune_file(dst, "foreign")
    x = np.random.default_rng(5).standard_normal((6, 4)).astype(np.float32)
    a = ort_session(src).run(None, {"X": x})
    b = ort_session(dst).run(None, {"X": x})
    for i, (p, q) in enumerate(zip(a, b)):
        if not np.allclose(p, q, atol=1e-6):
            fail(f"foreign: output {i} differs after attune's load and save")
    print("foreign: loaded, saved, same outputs in onnxruntime")


def main():
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([exe, "--emit", d], capture_output=True, text=True)
        if r.returncode != 0:
            print(r.stdout, r.stderr)
            fail(f"test_io --emit failed with {r.returncode}")
        else:
            run_emitted(d)
        run_foreign(d)
    print(f"onnx {onnx.__version__}, onnxruntime {ort.__version__}: "
          f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
