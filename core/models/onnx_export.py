"""Keras to ONNX directly, for the few kinds of layer a MobileNetV2 base is made of.

tf2onnx converts any TensorFlow graph, and pays for it: tracing the model,
freezing its variables into constants and rewriting the graph take 1.2-1.8 s
for MobileNetV2 on this project's 2-core machine, on every cold run. A frozen
MobileNetV2 extractor is made of eight kinds of layer, each one ONNX operator
(Keras weights rearranged for ONNX's channels-first layout), so writing the
graph directly takes about 0.2 s. Any other layer raises UnsupportedLayer and
core.models.onnx_base falls back to tf2onnx; either way the result is only
used after it agrees with Keras.
"""

from __future__ import annotations

import math

import numpy as np

# Part of the cached file's key: change it whenever what this module writes changes.
EXPORTER_VERSION = 1
OPSET = 17
INPUT_NAME, OUTPUT_NAME = "image", "features"


class UnsupportedLayer(NotImplementedError):
    """A layer (or a setting of one) this exporter does not write."""


class _Graph:
    """ONNX nodes and weights being written, with each Keras tensor's ONNX name."""

    def __init__(self):
        self.nodes, self.weights, self.names = [], [], {}

    def weight(self, name: str, array) -> str:
        from onnx import numpy_helper

        self.weights.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def export(model) -> bytes:
    """The serialized ONNX model of a functional Keras model: NHWC float32 images in, its output out."""
    from onnx import TensorProto, helper

    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayer("only models with one input and one output")
    graph = _Graph()
    # Channels-first inside, as ONNX's operators expect; the model's own layout outside.
    graph.names[id(model.inputs[0])] = graph.node("Transpose", [INPUT_NAME], "image_nchw",
                                                  perm=[0, 3, 1, 2])
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind not in _WRITERS:
            raise UnsupportedLayer(f"{kind} layer '{layer.name}'")
        inputs = layer.input if isinstance(layer.input, list) else [layer.input]
        names = [graph.names[id(tensor)] for tensor in inputs]
        graph.names[id(layer.output)] = _WRITERS[kind](graph, layer, names)

    output = graph.names[id(model.outputs[0])]
    shape = model.outputs[0].shape
    if len(shape) == 4:
        output = graph.node("Transpose", [output], "features_nhwc", perm=[0, 2, 3, 1])
    graph.node("Identity", [output], OUTPUT_NAME)
    onnx_graph = helper.make_graph(
        graph.nodes, model.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", *model.inputs[0].shape[1:]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", *shape[1:]])],
        graph.weights,
    )
    proto = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="pawlab")
    return proto.SerializeToString()


def _require(layer, **expected) -> None:
    config = layer.get_config()
    for key, value in expected.items():
        if config.get(key) != value:
            raise UnsupportedLayer(f"{type(layer).__name__} '{layer.name}' with {key}={config.get(key)!r}")


def _same_pads(layer, kernel: tuple[int, int], strides: tuple[int, int]) -> list[int]:
    """TensorFlow's "same" padding, which puts the odd pixel at the end: ONNX [top, left, bottom, right]."""
    if layer.get_config()["padding"] == "valid":
        return [0, 0, 0, 0]
    begins, ends = [], []
    for size, k, s in zip(layer.input.shape[1:3], kernel, strides):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return begins + ends


def _conv(graph: _Graph, layer, names: list[str], kernel: np.ndarray, group: int) -> str:
    """``kernel`` already in ONNX's (out, in / group, height, width) layout."""
    _require(layer, activation="linear", dilation_rate=(1, 1), data_format="channels_last")
    inputs = names + [graph.weight(f"{layer.name}/kernel", kernel)]
    if layer.use_bias:
        inputs.append(graph.weight(f"{layer.name}/bias", layer.bias.numpy()))
    size = kernel.shape[2:]
    return graph.node("Conv", inputs, layer.name, group=group, strides=list(layer.strides),
                      kernel_shape=list(size), pads=_same_pads(layer, size, layer.strides))


def _conv2d(graph, layer, names):
    _require(layer, groups=1)
    return _conv(graph, layer, names, layer.kernel.numpy().transpose(3, 2, 0, 1), group=1)


def _depthwise(graph, layer, names):
    height, width, channels, multiplier = layer.kernel.shape
    # Output channel c * multiplier + m comes from input channel c: ONNX's grouped order.
    kernel = layer.kernel.numpy().transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, height, width)
    return _conv(graph, layer, names, kernel, group=channels)


def _batch_norm(graph, layer, names):
    if layer.axis not in (-1, 3):
        raise UnsupportedLayer(f"BatchNormalization '{layer.name}' over axis {layer.axis}")
    channels = layer.moving_mean.shape[0]
    gamma = layer.gamma.numpy() if layer.scale else np.ones(channels, np.float32)
    beta = layer.beta.numpy() if layer.center else np.zeros(channels, np.float32)
    parameters = [graph.weight(f"{layer.name}/{part}", value) for part, value in (
        ("gamma", gamma), ("beta", beta), ("mean", layer.moving_mean.numpy()),
        ("variance", layer.moving_variance.numpy()))]
    return graph.node("BatchNormalization", names + parameters, layer.name, epsilon=layer.epsilon)


def _relu(graph, layer, names):
    _require(layer, negative_slope=0.0, threshold=0.0)
    bounds = [graph.weight(f"{layer.name}/min", np.float32(0))]
    if layer.max_value is not None:
        bounds.append(graph.weight(f"{layer.name}/max", np.float32(layer.max_value)))
    return graph.node("Clip", names + bounds, layer.name)


def _zero_padding(graph, layer, names):
    _require(layer, data_format="channels_last")
    (top, bottom), (left, right) = layer.padding
    pads = graph.weight(f"{layer.name}/pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    return graph.node("Pad", names + [pads], layer.name, mode="constant")


def _add(graph, layer, names):
    if len(names) != 2:
        raise UnsupportedLayer(f"Add '{layer.name}' of {len(names)} inputs")
    return graph.node("Add", names, layer.name)


def _rescaling(graph, layer, names):
    if not (np.ndim(layer.scale) == 0 and np.ndim(layer.offset) == 0):
        raise UnsupportedLayer(f"Rescaling '{layer.name}' per channel")
    scaled = graph.node("Mul", names + [graph.weight(f"{layer.name}/scale", np.float32(layer.scale))],
                        f"{layer.name}/scaled")
    return graph.node("Add", [scaled, graph.weight(f"{layer.name}/offset", np.float32(layer.offset))],
                      layer.name)


def _global_average(graph, layer, names):
    _require(layer, data_format="channels_last", keepdims=False)
    pooled = graph.node("GlobalAveragePool", names, f"{layer.name}/pooled")
    return graph.node("Flatten", [pooled], layer.name, axis=1)


_WRITERS = {
    "Conv2D": _conv2d, "DepthwiseConv2D": _depthwise, "BatchNormalization": _batch_norm,
    "ReLU": _relu, "ZeroPadding2D": _zero_padding, "Add": _add, "Rescaling": _rescaling,
    "GlobalAveragePooling2D": _global_average,
}
