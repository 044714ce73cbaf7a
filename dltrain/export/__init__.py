"""``dltrain export``: a run's model as ONNX, safetensors or a torch.export program, with a card."""
