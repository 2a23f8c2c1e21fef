"""Model sources: a loaded network and what is known about it (loaded.py, the leaf), the sources
(sources.py: torchvision, EfficientNet-Lite, TorchScript, ONNX, entry points), the cached torchvision
manifest (manifest.py) and SageMaker archives studied through their own handler (sagemaker.py).
"""
