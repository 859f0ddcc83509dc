"""Research and release tools: training data (`data/`), training, evaluation, widening a network,
the benchmark and the ONNX export. The venue's engine never imports this package."""
